"""Run post_deployment_tests/deployment_test.py against a freshly started local server."""

import subprocess
import sys

import pytest
from server import ROOT, service_env


@pytest.mark.slow
@pytest.mark.parametrize("with_token", [False, True], ids=["open", "token"])
@pytest.mark.timeout(1200)  # the suite it runs has 600 s of its own
def test_post_deployment_suite(server_pool, request, tmp_path, with_token):
    pool = server_pool(request, impl=None)
    settings, client = {}, {}
    if with_token:
        # the service asks for tokens; the suite sends its read-write one from ARCHIVE_TOKEN
        token = "post-deployment-rw-token-0123456789"
        tokens = tmp_path / "tokens"
        tokens.write_text(f"rw {token}\n")
        tokens.chmod(0o600)
        settings["PAI_AUTH_TOKENS_FILE"] = str(tokens)
        client["ARCHIVE_TOKEN"] = token
    # PYAI_IMPL unset: the implementation the service picks by default
    srv = pool.start("postdeploy", impl=False, **settings)
    env = service_env(
        tmp_path,
        ARCHIVE_URL=srv.url,
        LARGE_FILE_SIZE=str(8 * 1024 * 1024),
        MANY_FILES_TEST_COUNT="100",
        **client,
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "post_deployment_tests/deployment_test.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-3000:]
    # everything the tests stored was deleted again
    assert srv.all_files() == [], srv.all_files()
