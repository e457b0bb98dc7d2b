"""A real, throw-away Orthanc PACS for the DICOMweb tests (Debian's ``orthanc`` + ``orthanc-dicomweb``).

The tests run the ``Orthanc`` binary themselves (never the Debian service) with their own JSON
config: a temporary storage folder, free HTTP and DICOM ports, remote access refused (Orthanc 1.10
has no bind-address option: with ``RemoteAccessAllowed: false`` it answers 127.0.0.1 only), no
authentication, and the DICOMweb plugin loaded from where the package puts it. HTTP requests are
logged (``--verbose-http``) so a test can count the retrievals a command made.
``make orthanc-deps`` installs the packages (root only); without them the tests skip with the reason.
"""

from __future__ import annotations

import ctypes
import glob
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

PLUGIN_GLOBS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/lib/*/orthanc/plugins/libOrthancDicomWeb.so*",
)
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plugin() -> str | None:
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@dataclass(frozen=True)
class OrthancServer:
    """A running Orthanc: ``url`` is its REST root, ``dicomweb`` its DICOMweb root, ``log`` its log file."""

    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def upload(self, path: str | Path) -> dict:
        """POST one DICOM file to ``/instances`` (Orthanc's REST API); returns Orthanc's answer."""
        request = urllib.request.Request(f"{self.url}/instances", data=Path(path).read_bytes(), method="POST",
                                         headers={"Content-Type": "application/dicom"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def get(self, route: str) -> object:
        """GET a REST route (``/instances``, ``/studies/ID``...) as JSON."""
        with urllib.request.urlopen(f"{self.url}{route}", timeout=30) as response:
            return json.loads(response.read())

    def refuse(self, text: str) -> None:
        """From now on Orthanc answers HTTP 403 to every request whose URI contains ``text`` ("" = none):
        its own Lua ``IncomingHttpRequestFilter`` (``FILTER_LUA``) reads this file on each request."""
        (self.log.parent / "refused.txt").write_text(text)

    def requests_matching(self, text: str) -> int:
        """How many HTTP requests in Orthanc's log contain ``text`` (e.g. ``/instances/<SOP UID>``)."""
        return sum(1 for line in self.log.read_text(errors="replace").splitlines()
                   if "(http) GET " in line and text in line)


def start_orthanc() -> Iterator[OrthancServer] | str:
    """A generator yielding a running server (stopped and removed after), or the reason there is none."""
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").is_file() else None)
    if binary is None:
        return "no Orthanc binary found; run `make orthanc-deps` (root) to install orthanc and orthanc-dicomweb"
    plugin = _plugin()
    if plugin is None:
        return "the Orthanc DICOMweb plugin (libOrthancDicomWeb.so) is not installed; run `make orthanc-deps` (root)"
    return _run(binary, plugin)


def _die_with_parent() -> None:
    """In the child: Linux sends it SIGTERM when the test process dies (killed by a timeout, say)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _wait_until_up(server: OrthancServer, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with code {process.returncode}; its log:\n"
                               f"{server.log.read_text(errors='replace')[-3000:]}")
        try:
            server.get("/system")
            server.get("/dicom-web/studies")  # the plugin answers too
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT_S:.0f} s")


# Orthanc's own request filter (Lua), so a test can make the PACS refuse chosen requests
FILTER_LUA = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  local f = io.open("REFUSED_FILE", "r")
  if f == nil then return true end
  local text = f:read("*a")
  f:close()
  return text == "" or string.find(uri, text, 1, true) == nil
end
"""


def _run(binary: str, plugin: str) -> Iterator[OrthancServer]:
    root = Path(tempfile.mkdtemp(prefix="medssl-orthanc-"))
    http_port, dicom_port = _free_port(), _free_port()
    config = {
        "Name": "medssl-test",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "MEDSSLTEST",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "StudiesMetadata": "Full"},
        "StorageCompression": False,
        "LuaScripts": [str(root / "filter.lua")],
        "HttpTimeout": 30,
    }
    (root / "filter.lua").write_text(FILTER_LUA.replace("REFUSED_FILE", str(root / "refused.txt")))
    (root / "orthanc.json").write_text(json.dumps(config, indent=2))
    server = OrthancServer(http_port, root / "orthanc.log")
    with open(server.log, "wb") as log:
        process = subprocess.Popen([binary, "--verbose-http", str(root / "orthanc.json")], stdout=log,
                                   stderr=subprocess.STDOUT, cwd=root, preexec_fn=_die_with_parent)
    try:
        _wait_until_up(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
