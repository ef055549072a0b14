"""
imgvault-gateway behind a real nginx reverse proxy, configured as
docs/GATEWAY.md says: the partner network is matched against the client
nginx saw (X-Forwarded-For, believed from the proxy only), a client cannot
spoof it through the proxy, Range and large files stream through, and the
proxy's own log can be kept free of tokens.
"""
import shutil
import subprocess
import time

import pytest

from gatewaylib import curl, free_port, gateway, gw_image_master, gw_images, gw_port, gw_store  # noqa: F401

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not shutil.which("nginx") and not shutil.os.path.exists(NGINX),
                                reason="nginx is not installed")


@pytest.fixture
def proxied(gw_store, gateway, tmp_path):
    """The gateway trusting 127.0.0.1 (nginx's side of the connection), and
    nginx on its own port in front of it."""
    g = gateway(gw_store, "--trusted-proxy", "127.0.0.1")
    port = free_port()
    (tmp_path / "ngtmp").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx.err;
events {{ worker_connections 128; }}
http {{
  client_body_temp_path {tmp_path}/ngtmp; proxy_temp_path {tmp_path}/ngtmp;
  fastcgi_temp_path {tmp_path}/ngtmp; uwsgi_temp_path {tmp_path}/ngtmp;
  scgi_temp_path {tmp_path}/ngtmp;
  log_format notoken '$remote_addr "$request_method $uri_prefix" $status $body_bytes_sent';
  map $uri $uri_prefix {{ ~^(/[svp]/) $1TOKEN; default $uri; }}
  access_log {tmp_path}/nginx.access notoken;
  server {{
    listen 127.0.0.1:{port};
    location ~ ^/(s|v|p)/ {{
      proxy_pass http://127.0.0.1:{g.port};
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header Host $host;
      proxy_buffering off;
      proxy_request_buffering off;
    }}
    location = /healthz {{ proxy_pass http://127.0.0.1:{g.port}; }}
  }}
}}
""")
    p = subprocess.Popen([NGINX, "-c", str(conf), "-g", "daemon off;"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if curl(f"http://127.0.0.1:{port}/healthz").status == 200:
            break
        time.sleep(0.05)
    else:
        p.kill()
        pytest.fail("nginx did not come up: " + (tmp_path / "nginx.err").read_text())
    yield gw_store, g, port, tmp_path
    p.terminate()
    p.wait(timeout=10)


def via(port, link, route="s"):
    return f"http://127.0.0.1:{port}/{route}/{link.token}"


def test_partner_network_is_the_client_nginx_saw(proxied):
    s, g, port, tmp = proxied
    assert s.iv("partner", "add", "lab", "--cidr", "127.0.0.2/32").rc == 0
    link = s.share("default/photo.jpg", "--partner", "lab")
    assert curl(via(port, link), interface="127.0.0.2").status == 200
    # From another address, the proxy's own address does not count either.
    assert curl(via(port, link), interface="127.0.0.3").status == 403
    assert curl(via(port, link)).status == 403


def test_a_client_cannot_spoof_its_address_through_the_proxy(proxied):
    s, g, port, tmp = proxied
    assert s.iv("partner", "add", "lab", "--cidr", "10.9.8.7/32").rc == 0
    link = s.share("default/photo.jpg", "--partner", "lab")
    spoof = ("-H", "X-Forwarded-For: 10.9.8.7")
    assert curl(via(port, link), *spoof, interface="127.0.0.2").status == 403
    # Nor straight at the gateway, whose peer is then not a trusted proxy.
    assert curl(link.url, *spoof, interface="127.0.0.2").status == 403
    assert "127.0.0.2" in g.output()


def test_range_and_a_large_file_stream_through(proxied):
    s, g, port, tmp = proxied
    link = s.share("default/big.png", "--variant", "pristine")
    whole = curl(link.url)
    assert whole.status == 200 and len(whole.body) > 4 << 20
    r = curl(via(port, link))
    assert r.status == 200 and r.body == whole.body
    r = curl(via(port, link), "-H", "Range: bytes=1000-1999")
    assert r.status == 206 and r.body == whole.body[1000:2000], repr(r)
    assert r.h("content-range") == f"bytes 1000-1999/{len(whole.body)}"


def test_tokens_stay_out_of_both_logs(proxied):
    s, g, port, tmp = proxied
    link = s.share("default/photo.jpg")
    assert curl(via(port, link)).status == 200
    assert curl(via(port, link, "v")).status == 200
    time.sleep(0.2)
    access = (tmp / "nginx.access").read_text()
    assert '"GET /s/TOKEN" 200' in access, access
    for text in (access, g.output()):
        assert link.token not in text
        assert link.token.split(".")[0] not in text
