package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// nginxConf is one nginx of the chain: plain reverse proxying, keep-alive
// upstreams, no logging, no tracing. One worker per proxy: two workers for the
// two legs, as many as the agent's GOMAXPROCS on this 2-core machine.
// keepalive_requests is raised from its default of 1,000, after which nginx
// would close a client connection that the other setups keep.
const nginxConf = `daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 65536;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
	worker_connections 16384;
}
http {
	access_log off;
	keepalive_requests 1000000;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	upstream http_up {
		server %[3]s;
		keepalive 64;
		keepalive_requests 1000000;
	}
	upstream grpc_up {
		server %[5]s;
		keepalive 64;
		keepalive_requests 1000000;
	}
	server {
		listen %[2]d;
		location / {
			proxy_pass http://http_up;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
	server {
		listen %[4]d http2;
		location / {
			grpc_pass grpc://grpc_up;
		}
	}
}
`

func newNginx(nginxBin string) *chain {
	return &chain{kind: "nginx", command: func(e *env, leg chainLeg) (*exec.Cmd, error) {
		dir := filepath.Join(e.cfg.workDir, "nginx-"+leg.side)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, "nginx.conf")
		text := fmt.Sprintf(nginxConf, dir, leg.httpPort, leg.httpUp, leg.grpcPort, leg.grpcUp)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return nil, err
		}
		return exec.Command(nginxBin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf), nil
	}}
}
