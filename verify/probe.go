package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// ErrLookup means a pod could not resolve the name it was asked to dial.
var ErrLookup = errors.New("name not resolved")

// probeTimeout bounds one probe: agnhost's own HTTP client gives up after 5 s.
const probeTimeout = 8 * time.Second

// dial asks pod from (agnhost netexec, through the API server's pod proxy)
// to make one HTTP request to host:port/request and returns the answer. A
// host the pod cannot resolve is ErrLookup; a request that got no answer is
// an error with agnhost's words.
func (r *run) dial(ctx context.Context, from, host string, port int, request string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	raw, err := r.cs.CoreV1().Pods(r.ns).ProxyGet("http", from, strconv.Itoa(httpPort), "dial", map[string]string{
		"host": host, "port": strconv.Itoa(port), "request": request, "protocol": "http", "tries": "1",
	}).DoRaw(ctx)
	if err != nil {
		// agnhost answers 400 "host and/or port param are invalid. lookup ..."
		// when the name does not resolve.
		if apierrors.IsBadRequest(err) && strings.Contains(string(raw)+err.Error(), "lookup") {
			return "", fmt.Errorf("%w: %s", ErrLookup, lastLine(string(raw)+" "+err.Error()))
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("no answer from pod %s within %s", from, probeTimeout)
		}
		return "", fmt.Errorf("pod %s (through the API server's proxy): %w", from, err)
	}
	var out struct {
		Responses []string `json:"responses"`
		Errors    []string `json:"errors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", fmt.Errorf("pod %s: answer %q: %w", from, clip(string(raw)), err)
	}
	if len(out.Responses) == 0 {
		msg := strings.Join(out.Errors, "; ")
		if msg == "" {
			msg = "an empty answer"
		}
		return "", errors.New(msg)
	}
	return out.Responses[0], nil
}

// fetch makes an HTTP GET of http://addr/path through dial (a node's, whose
// SSH tunnel opens the connection from its own network, or this machine's),
// within 5 s.
func fetch(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tr := &http.Transport{DialContext: dial, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("no answer from %s within 5s", addr)
		}
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s%s: %s", addr, path, resp.Status)
	}
	return string(b), nil
}

// retry calls f until it succeeds or d passes: a new Service or policy takes
// a moment to reach every node. Not poll.Until: that hands the check a
// context cut at the window's end, which would cut a probe (8 s, agnhost's
// own 5 s inside) short in a 5 s window and blur why it failed; here the
// last probe runs to its own bound and its own error is returned.
func retry(ctx context.Context, d time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(d)
	for {
		err := f(ctx)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return clip(s)
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
