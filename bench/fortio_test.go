package bench

import "testing"

func TestParseFortio(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		want    FortioRun
		wantErr bool
	}{
		{
			name: "http with socket errors",
			json: `{"ActualQPS": 998.5, "ActualDuration": 10000000000,
				"RetCodes": {"200": 9980, "-1": 3, "503": 2},
				"DurationHistogram": {"Count": 9985, "Percentiles": [
					{"Percentile": 50, "Value": 0.000164}, {"Percentile": 90, "Value": 0.000258},
					{"Percentile": 99, "Value": 0.000392}, {"Percentile": 99.9, "Value": 0.0007}]}}`,
			want: FortioRun{RPS: 998.5, Requests: 9985, Errors: 5, Seconds: 10, P50us: 164, P90us: 258, P99us: 392, P999us: 700},
		},
		{
			name: "grpc ping",
			json: `{"ActualQPS": 500, "ActualDuration": 2000000000, "RetCodes": {"SERVING": 1000},
				"DurationHistogram": {"Count": 1000, "Percentiles": [
					{"Percentile": 50, "Value": 0.001}, {"Percentile": 90, "Value": 0.002},
					{"Percentile": 99, "Value": 0.003}, {"Percentile": 99.9, "Value": 0.004}]}}`,
			want: FortioRun{RPS: 500, Requests: 1000, Seconds: 2, P50us: 1000, P90us: 2000, P99us: 3000, P999us: 4000},
		},
		{
			name:    "percentiles missing",
			json:    `{"ActualQPS": 1, "RetCodes": {"200": 1}, "DurationHistogram": {"Count": 1, "Percentiles": [{"Percentile": 50, "Value": 0.001}]}}`,
			wantErr: true,
		},
		{name: "not json", json: `Fortio 1.63.0`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFortio([]byte(tt.json))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			approx := func(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }
			if got.Requests != tt.want.Requests || got.Errors != tt.want.Errors || !approx(got.RPS, tt.want.RPS) ||
				!approx(got.Seconds, tt.want.Seconds) || !approx(got.P50us, tt.want.P50us) || !approx(got.P90us, tt.want.P90us) ||
				!approx(got.P99us, tt.want.P99us) || !approx(got.P999us, tt.want.P999us) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
