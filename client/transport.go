package client

import "errors"

// Transport is how a caller reaches the service, as the CLI's flags, the
// edge adapter's configuration and the server's health probe all describe
// it. Options turns it into client options, so the three agree on what
// each setting means.
type Transport struct {
	Insecure   bool   // plaintext: loopback and tests only
	CAFile     string // verify the server against this CA (default: the system roots)
	CertFile   string // client certificate for mutual TLS, with KeyFile
	KeyFile    string
	ServerName string // name expected in the server's certificate
	Token      string // bearer token
}

// Options returns the client options of t. Plaintext with a CA file or a
// client certificate is refused: it would silently ignore them.
func (t Transport) Options() ([]Option, error) {
	var opts []Option
	if t.Insecure {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" {
			return nil, errors.New("imgedge client: plaintext cannot be combined with a CA file or a client certificate")
		}
		opts = append(opts, WithInsecure())
	} else {
		opts = append(opts, WithSystemTLS())
		if t.CAFile != "" {
			opts = append(opts, WithCAFile(t.CAFile))
		}
		if t.CertFile != "" || t.KeyFile != "" {
			opts = append(opts, WithClientCertificate(t.CertFile, t.KeyFile))
		}
		if t.ServerName != "" {
			opts = append(opts, WithServerName(t.ServerName))
		}
	}
	if t.Token != "" {
		opts = append(opts, WithToken(t.Token))
	}
	return opts, nil
}
