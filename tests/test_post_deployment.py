"""Run post_deployment_tests/deployment_test.py against a freshly started local server."""

import subprocess
import sys

import pytest

from server import ROOT, ServerPool, service_env


@pytest.mark.slow
def test_post_deployment_suite(tmp_path):
    pool = ServerPool(tmp_path / "servers", impl=None)
    try:
        # PYAI_IMPL unset: the implementation the service picks by default
        srv = pool.start("postdeploy", impl=False)
        env = service_env(
            tmp_path,
            ARCHIVE_URL=srv.url,
            LARGE_FILE_SIZE=str(8 * 1024 * 1024),
            MANY_FILES_TEST_COUNT="100",
        )
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "post_deployment_tests/deployment_test.py"],
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
    finally:
        pool.close()
