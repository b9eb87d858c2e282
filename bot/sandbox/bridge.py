"""Runs inside the sandbox (standard library only): serves loopback ports that lead to agentry's
egress proxy through a unix socket, then runs the command and exits with its status.

    python -I -S bridge.py SOCKET PROXY_PORT [HOST:PORT ...] -- COMMAND...

PROXY_PORT on 127.0.0.1 is a plain pipe to the proxy (HTTP_PROXY/HTTPS_PROXY point at it). Each
HOST:PORT is an allowed endpoint on the host's loopback: the bridge listens at the same address and
asks the proxy for a tunnel there, so clients that bypass proxies for localhost still arrive.

It starts with every agent run, so it imports only built-in modules (`_socket`, `_thread`,
`_signal`): `socket`, `subprocess` and `threading` would triple its start-up time.
"""

import _signal
import _socket
import _thread
import os
import sys

CHUNK = 65536
PASSED_ON = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP)
DEFAULT_IN_CHILD = (_signal.SIGPIPE, _signal.SIGXFSZ)  # Python ignores them; the command must not


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
        target.shutdown(_socket.SHUT_WR)
    except OSError:
        pass
    done()


def join(client, upstream):
    left = [2]
    lock = _thread.allocate_lock()

    def done():
        with lock:
            left[0] -= 1
            if left[0] == 0:
                client.close()
                upstream.close()

    for source, target in ((client, upstream), (upstream, client)):
        _thread.start_new_thread(pump, (source, target, done))


def open_tunnel(socket_path, target):
    upstream = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
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
        fd, _ = listener._accept()
        client = _socket.socket(fileno=fd)
        try:
            upstream = open_tunnel(socket_path, target)
        except OSError:
            upstream = None
        if upstream is None:
            client.close()
            continue
        join(client, upstream)


def listen(host, port):
    family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
    listener = _socket.socket(family, _socket.SOCK_STREAM)
    listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
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
        _thread.start_new_thread(serve, (listener, socket_path, target))
    os.umask(0o022)
    try:
        child = os.posix_spawnp(command[0], command, os.environ, setpgroup=0, setsigdef=DEFAULT_IN_CHILD)
    except OSError as exc:
        print(f"agentry sandbox: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    for number in PASSED_ON:
        _signal.signal(number, lambda received, frame: pass_on(child, received))
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    if code < 0:
        with open(socket_path.removesuffix("proxy.sock") + "exit-status", "w") as status:
            status.write(f"signal {-code}\n")
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
