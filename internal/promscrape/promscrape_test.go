package promscrape

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write([]byte("# TYPE up gauge\nup{job=\"a\"} 1\n"))
		case "/big":
			_, _ = w.Write([]byte(strings.Repeat("#", MaxBytes+1)))
		case "/bad":
			_, _ = w.Write([]byte("up{ 1\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	tests := []struct {
		path, wantErr string
	}{
		{"/ok", ""},
		{"/big", "answer over"},
		{"/bad", "parse"},
		{"/missing", "404"},
	}
	for _, tt := range tests {
		fams, err := Scrape(context.Background(), srv.Client(), srv.URL+tt.path)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.path, err)
		case tt.wantErr == "" && fams["up"].GetMetric()[0].GetGauge().GetValue() != 1:
			t.Errorf("%s: families %v", tt.path, fams)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: err %v, want one containing %q", tt.path, err, tt.wantErr)
		}
	}
}
