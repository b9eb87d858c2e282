"""Runs inside the sandbox (standard library only): serves loopback ports that lead to agentry's
egress proxy through a unix socket, then runs the command and exits with its status.

    python -I -S bridge.py SOCKET PROXY_PORT [HOST:PORT ...] -- COMMAND...

PROXY_PORT on 127.0.0.1 is a plain pipe to the proxy (HTTP_PROXY/HTTPS_PROXY point at it). Each
HOST:PORT is an allowed endpoint on the host's loopback: the bridge listens at the same address and
asks the proxy for a tunnel there, so clients that bypass proxies for localhost still arrive.
"""

import os
import signal
import socket
import subprocess
import sys
import threading

CHUNK = 65536


def pump(source, target, done):
    try:
        while True:
            data = source.recv(CHUNK)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    try:
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    done()


def join(client, upstream):
    left = [2]
    lock = threading.Lock()

    def done():
        with lock:
            left[0] -= 1
            if left[0] == 0:
                client.close()
                upstream.close()

    for source, target in ((client, upstream), (upstream, client)):
        threading.Thread(target=pump, args=(source, target, done), daemon=True).start()


def open_tunnel(socket_path, target):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    upstream.connect(socket_path)
    if target is None:
        return upstream
    upstream.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = upstream.recv(4096)
        if not data or len(head) > 65536:
            upstream.close()
            return None
        head += data
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        upstream.close()
        return None
    return upstream


def serve(listener, socket_path, target):
    while True:
        client, _ = listener.accept()
        try:
            upstream = open_tunnel(socket_path, target)
        except OSError:
            upstream = None
        if upstream is None:
            client.close()
            continue
        join(client, upstream)


def listen(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(64)
    return listener


def pass_on(group, number):
    """As pid 1 the bridge gets a stop's signal; the command's whole group gets it, as unsandboxed."""
    try:
        os.killpg(group, number)
    except OSError:
        pass


def main(argv):
    split = argv.index("--")
    socket_path, proxy_port, forwards, command = argv[0], int(argv[1]), argv[2:split], argv[split + 1:]
    routes = [("127.0.0.1", proxy_port, None)]
    for forward in forwards:
        host, _, port = forward.rpartition(":")
        routes.append((host.strip("[]"), int(port), forward))
    for host, port, target in routes:
        try:
            listener = listen(host, port)
        except OSError:
            if target is None:
                raise
            continue  # a privileged or taken port: that endpoint is still reachable through the proxy
        threading.Thread(target=serve, args=(listener, socket_path, target), daemon=True).start()
    os.umask(0o022)
    try:
        child = subprocess.Popen(command, process_group=0)
    except OSError as exc:
        print(f"agentry sandbox: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda received, frame: pass_on(child.pid, received))
    code = child.wait()
    if code < 0:
        with open(socket_path.removesuffix("proxy.sock") + "exit-status", "w") as status:
            status.write(f"signal {-code}\n")
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
