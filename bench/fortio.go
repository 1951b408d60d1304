package bench

import (
	"encoding/json"
	"fmt"
)

// FortioRun is what a result needs from `fortio load -json`.
type FortioRun struct {
	RPS      float64
	Requests int64
	Errors   int64
	Seconds  float64
	P50us    float64
	P90us    float64
	P99us    float64
	P999us   float64
}

// Percentiles fortio must be asked for (-p) so ParseFortio finds them.
const FortioPercentiles = "50,90,99,99.9"

type fortioJSON struct {
	ActualQPS         float64
	ActualDuration    int64 // ns
	RetCodes          map[string]int64
	DurationHistogram struct {
		Count       int64
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
}

// ParseFortio reads fortio's JSON result. A request counts as successful when
// its code is 200 (HTTP) or SERVING (gRPC ping and health); everything else,
// socket errors (-1) included, is an error.
func ParseFortio(data []byte) (FortioRun, error) {
	var j fortioJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return FortioRun{}, fmt.Errorf("decode fortio result: %w", err)
	}
	r := FortioRun{
		RPS:      j.ActualQPS,
		Requests: j.DurationHistogram.Count,
		Seconds:  float64(j.ActualDuration) / 1e9,
	}
	var ok int64
	for code, n := range j.RetCodes {
		if code == "200" || code == "SERVING" {
			ok += n
		}
	}
	r.Errors = r.Requests - ok
	found := 0
	for _, p := range j.DurationHistogram.Percentiles {
		us := p.Value * 1e6
		switch p.Percentile {
		case 50:
			r.P50us = us
		case 90:
			r.P90us = us
		case 99:
			r.P99us = us
		case 99.9:
			r.P999us = us
		default:
			continue
		}
		found++
	}
	if found != 4 {
		return r, fmt.Errorf("fortio result has %d of the percentiles %s", found, FortioPercentiles)
	}
	return r, nil
}
