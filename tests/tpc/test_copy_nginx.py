"""nginx as the passive end of a COPY: pyai pulls what nginx serves and pushes to nginx's WebDAV
PUT, with raw COPY requests and with gfal-copy in each mode."""

import os

import pytest
import requests
from deploy.tools import require_tool
from harness import Spawned, free_port

from tpc.test_copy_raw import check_stream

CONF = """\
{user}
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {work}/client-body;
    server {{
        listen 127.0.0.1:{port};
        root {work}/files;
        client_max_body_size 0;
        dav_methods PUT;
        create_full_put_path on;
    }}
}}
"""


class DavNginx(Spawned):
    """nginx serving ``<work>/files`` and taking PUTs into it."""

    name = "nginx"

    def __init__(self, work):
        self.work = work
        (work / "files").mkdir(parents=True)
        super().__init__(work / "nginx.out", free_port())

    def start(self):
        binary = require_tool("nginx", "nginx-light")
        conf = self.work / "nginx.conf"
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(CONF.format(user=user, work=self.work, port=self.port))
        self.spawn([binary, "-p", str(self.work), "-e", str(self.work / "error.log"), "-c", str(conf)])
        self.wait_ready(lambda: requests.get(self.url + "/", timeout=2).status_code in (200, 403, 404), 30)
        return self


@pytest.fixture(scope="module")
def dav(tmp_path_factory):
    server = DavNginx(tmp_path_factory.mktemp("dav-nginx")).start()
    yield server
    server.stop()


def test_pull_from_nginx_and_push_to_it(tpc_server, dav, int_id):
    data = os.urandom(1_500_000)
    (dav.work / "files" / "src.bin").write_bytes(data)
    pulled = requests.request("COPY", tpc_server.id_url(int_id), headers={"Source": dav.url + "/src.bin"}, timeout=60)
    assert check_stream(pulled) == "success: Created"
    assert tpc_server.stored_path(int_id).read_bytes() == data
    pushed = requests.request(
        "COPY", tpc_server.id_url(int_id), headers={"Destination": dav.url + "/out/pushed.bin"}, timeout=60
    )
    assert check_stream(pushed) == "success: Created"
    assert (dav.work / "files" / "out" / "pushed.bin").read_bytes() == data


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_gfal_copies_third_party_with_nginx(tpc_server, dav, int_id, gfal, mode):
    data = os.urandom(800_000)
    if mode == "pull":  # nginx -> pyai, pyai pulling
        (dav.work / "files" / f"{int_id}.bin").write_bytes(data)
        source, destination = f"{dav.url}/{int_id}.bin", tpc_server.id_url(int_id)
    else:  # pyai -> nginx, pyai pushing
        assert requests.put(tpc_server.id_url(int_id), data=data, timeout=30).status_code == 201
        source, destination = tpc_server.id_url(int_id), f"{dav.url}/{int_id}.bin"
    proc = gfal.run("gfal-copy", "-v", source, f"{destination}?copy_mode={mode}")
    assert f"TRANSFER:TYPE\t3rd {mode}" in proc.stdout, proc.stdout
    if mode == "pull":
        assert tpc_server.stored_path(int_id).read_bytes() == data
    else:
        assert (dav.work / "files" / f"{int_id}.bin").read_bytes() == data
