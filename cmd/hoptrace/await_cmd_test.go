package main

import (
	"strings"
	"testing"
)

func TestListeningIn(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:3A99 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:3A9E 0100007F:8F2C 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
`
	for _, tt := range []struct {
		port uint16
		want bool
	}{
		{15001, true},  // 3A99, LISTEN
		{15006, false}, // 3A9E, but ESTABLISHED
		{8080, false},
	} {
		got, err := listeningIn(strings.NewReader(table), tt.port)
		if err != nil || got != tt.want {
			t.Errorf("port %d: %v, %v; want %v", tt.port, got, err, tt.want)
		}
	}
}
