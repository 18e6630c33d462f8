// Package cloudfront holds Go types for CloudFront Lambda@Edge events
// (aws-lambda-go has none) and the one edit the adapter makes to a request:
// its URI.
//
// The adapter must hand back the request exactly as it came except for the
// URI, so a Request keeps the raw JSON it was decoded from, and WithURI
// splices the new URI into those bytes instead of re-encoding the request:
// fields this package does not model, key order and formatting survive.
package cloudfront

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Event is a Lambda@Edge event: one record for CloudFront events.
type Event struct {
	Records []Record `json:"Records"`
}

// Record is one CloudFront record.
type Record struct {
	CF CF `json:"cf"`
}

// CF carries the distribution's config and the request.
type CF struct {
	Config  Config  `json:"config"`
	Request Request `json:"request"`
}

// Config describes the distribution and the event.
type Config struct {
	DistributionDomainName string `json:"distributionDomainName"`
	DistributionID         string `json:"distributionId"`
	EventType              string `json:"eventType"` // "origin-request", "viewer-request", ...
	RequestID              string `json:"requestId"`
}

// Headers are CloudFront's headers: lower-case name → key/value pairs.
type Headers map[string][]Header

// Header is one header value with its original-case name.
type Header struct {
	Key   string `json:"key,omitempty"`
	Value string `json:"value"`
}

// Get returns the first value of a header (name in lower case), or "".
func (h Headers) Get(name string) string {
	if vs := h[strings.ToLower(name)]; len(vs) > 0 {
		return vs[0].Value
	}
	return ""
}

// Request is a CloudFront request. Raw holds the exact JSON it came from.
type Request struct {
	ClientIP    string  `json:"clientIp"`
	Method      string  `json:"method"`
	URI         string  `json:"uri"`
	QueryString string  `json:"querystring"`
	Headers     Headers `json:"headers"`
	Origin      *Origin `json:"origin,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes the modelled fields and keeps the raw bytes.
func (r *Request) UnmarshalJSON(data []byte) error {
	type plain Request
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	*r = Request(p)
	r.Raw = bytes.Clone(data)
	return nil
}

// MarshalJSON writes the raw bytes when present, so a request passes
// through untouched.
func (r Request) MarshalJSON() ([]byte, error) {
	if r.Raw != nil {
		return r.Raw, nil
	}
	type plain Request
	return json.Marshal(plain(r))
}

// Origin is the request's origin: S3 or custom.
type Origin struct {
	S3     *S3Origin     `json:"s3,omitempty"`
	Custom *CustomOrigin `json:"custom,omitempty"`
}

// S3Origin is an S3 bucket origin.
type S3Origin struct {
	AuthMethod    string  `json:"authMethod"`
	CustomHeaders Headers `json:"customHeaders"`
	DomainName    string  `json:"domainName"`
	Path          string  `json:"path"`
	Region        string  `json:"region"`
}

// CustomOrigin is an HTTP origin.
type CustomOrigin struct {
	CustomHeaders    Headers  `json:"customHeaders"`
	DomainName       string   `json:"domainName"`
	KeepaliveTimeout int      `json:"keepaliveTimeout"`
	Path             string   `json:"path"`
	Port             int      `json:"port"`
	Protocol         string   `json:"protocol"`
	ReadTimeout      int      `json:"readTimeout"`
	SSLProtocols     []string `json:"sslProtocols"`
}

// ParseEvent decodes an event and checks it holds exactly one request.
func ParseEvent(data []byte) (*Event, error) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("cloudfront: decoding the event: %w", err)
	}
	if len(ev.Records) != 1 {
		return nil, fmt.Errorf("cloudfront: the event has %d records, want 1", len(ev.Records))
	}
	if ev.Records[0].CF.Request.Raw == nil {
		return nil, errors.New("cloudfront: the event has no request")
	}
	return &ev, nil
}

// WithURI returns the raw request with its "uri" value replaced, every other
// byte unchanged.
func (r *Request) WithURI(uri string) ([]byte, error) {
	start, end, err := topLevelValue(r.Raw, "uri")
	if err != nil {
		return nil, err
	}
	encoded, err := json.Marshal(uri)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(r.Raw)+len(encoded))
	out = append(out, r.Raw[:start]...)
	out = append(out, encoded...)
	return append(out, r.Raw[end:]...), nil
}

// topLevelValue finds the byte range of a top-level member's value.
func topLevelValue(obj []byte, name string) (start, end int, err error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, 0, errors.New("cloudfront: the request is not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, 0, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		before := dec.InputOffset()
		if err := dec.Decode(&v); err != nil {
			return 0, 0, err
		}
		if key == name {
			after := int(dec.InputOffset())
			// InputOffset before Decode sits before the separator and spaces.
			s := int(before) + bytes.Index(obj[before:after], v)
			return s, s + len(v), nil
		}
	}
	return 0, 0, fmt.Errorf("cloudfront: the request has no %q member", name)
}
