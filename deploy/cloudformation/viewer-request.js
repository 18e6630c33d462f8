// CloudFront Function (cloudfront-js-2.0), viewer-request: reduce the viewer
// to what the variant depends on, so the cache key stays small and the hit
// ratio does not collapse. The Accept header becomes one of three format
// classes in x-imgedge-format; the query keeps only the variant parameters,
// with widths snapped to the adapter's breakpoints and qualities rounded.
var BREAKPOINTS = [160, 320, 480, 640, 768, 1024, 1280, 1600, 1920, 2560];
var PARAMS = { w: 'w', width: 'w', h: 'h', height: 'h', q: 'q', quality: 'q', preset: 'preset', format: 'format', f: 'format', fit: 'fit' };

function formatClass(accept) {
  var avif = false, webp = false;
  (accept || '').toLowerCase().split(',').forEach(function (part) {
    var bits = part.split(';'), type = bits[0].trim();
    var refused = bits.slice(1).some(function (p) { return /^\s*q\s*=\s*0(\.0*)?\s*$/.test(p); });
    if (refused) return;
    if (type === 'image/avif') avif = true;
    if (type === 'image/webp') webp = true;
  });
  return avif ? 'avif' : webp ? 'webp' : 'jpeg';
}

function snap(value) {
  var n = parseInt(value, 10);
  if (!(n > 0)) return null;
  for (var i = 0; i < BREAKPOINTS.length; i++) if (n <= BREAKPOINTS[i]) return String(BREAKPOINTS[i]);
  return String(BREAKPOINTS[BREAKPOINTS.length - 1]);
}

function quality(value) {
  if (value === 'auto') return value;
  var n = parseInt(value, 10);
  if (!(n > 0)) return null;
  n = Math.min(90, Math.max(40, n));
  return String(Math.min(90, Math.max(40, Math.round(n / 5) * 5)));
}

function handler(event) {
  var request = event.request;
  var accept = request.headers.accept ? request.headers.accept.value : '';
  request.headers['x-imgedge-format'] = { value: formatClass(accept) };
  var out = {};
  Object.keys(request.querystring).forEach(function (key) {
    var name = PARAMS[key.toLowerCase()];
    if (!name || out[name]) return;
    var entry = request.querystring[key];
    var value = entry.multiValue ? entry.multiValue[0].value : entry.value;
    if (name === 'w' || name === 'h') value = snap(value);
    else if (name === 'q') value = quality(value);
    else value = String(value).toLowerCase();
    if (value) out[name] = { value: value };
  });
  request.querystring = out;
  return request;
}

if (typeof module !== 'undefined') module.exports = { handler: handler, formatClass: formatClass };
