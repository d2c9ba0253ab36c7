import time, select, socket, threading
from tests.conftest import Account
from tests.test_list_read import CuttingProxy, imap_at, message

class Stall(CuttingProxy):
    def _serve(self):
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.target_port))
        try:
            while True:
                ready, _, _ = select.select([client, server], [], [], 30)
                if not ready: return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data: return
                    if sock is client:
                        server.sendall(data); continue
                    if self.from_server + len(data) >= self.limit:
                        client.sendall(data[: self.limit - self.from_server]); self.cut=True
                        time.sleep(4); return
                    self.from_server += len(data); client.sendall(data)
        finally:
            client.close(); server.close()

def test_sweep(signed_in: Account):
    big = b"Cc: " + b",\r\n ".join(b"recipient%03d@example.org" % i for i in range(300)) + b"\r\n"
    for n in range(20):
        signed_in.seed(message(n, extra=big))
    out = []
    for limit in [100, 1000, 2000, 2500, 10000, 100000]:
        p = Stall(signed_in.servers.imaps_port, limit)
        t=time.monotonic()
        r = signed_in.run("list", "-n", "20", env=imap_at("127.0.0.1", p.port, MAILBOT_TIMEOUT="1"))
        out.append((limit, round(time.monotonic()-t,1), r.returncode, r.stderr.strip()[-300:]))
        p.close()
    for o in out: print(o)
    assert 0
