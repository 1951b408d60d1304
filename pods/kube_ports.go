package pods

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// parsePorts parses a skip-ports annotation: comma-separated ports or inclusive
// ranges ("8080, 9090-9092"), the form Linkerd's and Istio's users already write.
// Spaces and empty items (a trailing comma) are tolerated; anything else is an
// error, because guessing at a user's exclusion could proxy traffic they meant
// to keep out. The result is sorted and free of duplicates; "" gives nil.
func parsePorts(v string) ([]uint16, error) {
	var ports []uint16
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(item, "-")
		first, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		last := first
		if isRange {
			if last, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("%q: %w", item, err)
			}
			if last < first {
				return nil, fmt.Errorf("%q: range ends before it starts", item)
			}
		}
		for p := int(first); p <= int(last); p++ {
			ports = append(ports, uint16(p))
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, errNotPort
	}
	return uint16(n), nil
}

var errNotPort = errors.New("not a port number 1-65535")
