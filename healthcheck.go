package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runHealthcheck is `pollbox healthcheck`: it asks the pollbox configured
// by the same environment for GET /readyz and fails unless the answer is
// 200, so that a container's HEALTHCHECK needs no shell or curl.
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("pollbox healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: pollbox healthcheck [--timeout 5s]\n\n"+
			"Exits 0 when the pollbox on $POLLBOX_ADDR answers GET /readyz with 200\n"+
			"(it is up and reaches Redis), else 1.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := parseConfig(nil, getenv, stderr)
	if err != nil {
		return err
	}
	u := healthURL(cfg)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	hc := &http.Client{Transport: &http.Transport{
		Proxy: nil,
		// The certificate names the public host, not the loopback address
		// checked here, and this is the very process being checked.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	res, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s answered %s", u, res.Status)
	}
	return nil
}

// healthURL is the /readyz URL of the configured listen address; one on
// every interface (":8080", "0.0.0.0:8080", "[::]:8080") is asked on
// 127.0.0.1.
func healthURL(cfg *config) string {
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		host, port = cfg.Addr, "80"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/readyz"
}
