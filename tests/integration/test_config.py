"""Configuration: INI file, environment, command line flags, and config errors."""

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from server import BIN, ROOT, free_port, gunicorn_command, service_env

SERVE = str(BIN / "pacifica-archiveinterface")
CMD = str(BIN / "pacifica-archiveinterface-cmd")


def write_ini(path, archive=None, posix=None):
    lines = []
    if archive is not None:
        lines.append("[archive]")
        lines += [f"{k} = {v}" for k, v in archive.items()]
    if posix is not None:
        lines.append("[posix]")
        lines += [f"{k} = {v}" for k, v in posix.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(args, env, timeout=30):
    """Run a command in its own session; kill the whole group if it does not finish."""
    if os.sep in args[0] and not os.path.exists(args[0]):
        raise AssertionError(f"{args[0]} does not exist (is the package installed: pip install -e .?)")
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{args} did not exit within {timeout}s: {err.decode()[-2000:]}") from None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


# --- INI file and environment ------------------------------------------------------


@pytest.mark.posix_only("the ini file selects the posix backend")
def test_ini_file_is_read(fresh_server, tmp_path):
    prefix = tmp_path / "ini-prefix"
    ini = write_ini(
        tmp_path / "archive.ini",
        archive={"backend": "posix", "prefix": prefix, "allow_overwrite": "true", "max_body_size": "1K"},
        posix={"use_id2filename": "true"},
    )
    srv = fresh_server.start(
        "ini", ARCHIVEINTERFACE_CONFIG=str(ini), PAI_PREFIX=None, PAI_BACKEND_TYPE=None, prefix=prefix
    )
    assert prefix.is_dir()
    url = srv.id_url(12345)
    assert requests.put(url, data=b"one", timeout=10).status_code == 201
    assert (prefix / "39" / "3039").read_bytes() == b"one"  # use_id2filename from [posix]
    resp = requests.put(url, data=b"two", timeout=10)  # allow_overwrite from [archive]
    assert resp.status_code == 201, resp.text
    assert (prefix / "39" / "3039").read_bytes() == b"two"
    assert requests.put(srv.id_url("foo.txt"), data=b"x", timeout=10).status_code == 400
    assert requests.put(srv.id_url(77), data=os.urandom(5000), timeout=10).status_code == 413  # max_body_size
    assert requests.put(srv.id_url(78), data=os.urandom(900), timeout=10).status_code == 201


@pytest.mark.posix_only("uses ids that are names")
def test_env_overrides_ini(fresh_server, tmp_path):
    ini_prefix = tmp_path / "ini-prefix"
    env_prefix = tmp_path / "env-prefix"
    ini = write_ini(
        tmp_path / "archive.ini",
        archive={"backend": "posix", "prefix": ini_prefix, "allow_overwrite": "true"},
        posix={"use_id2filename": "true"},
    )
    srv = fresh_server.start(
        "envini",
        ARCHIVEINTERFACE_CONFIG=str(ini),
        PAI_PREFIX=str(env_prefix),
        PAI_USE_ID2FILENAME="false",
        PAI_ALLOW_OVERWRITE="false",
    )
    url = srv.id_url("foo.txt")
    assert requests.put(url, data=b"env wins", timeout=10).status_code == 201
    assert (env_prefix / "foo.txt").read_bytes() == b"env wins"
    assert requests.put(url, data=b"again", timeout=10).status_code == 409
    assert not ini_prefix.exists() or not any(p.is_file() for p in ini_prefix.rglob("*"))


@pytest.mark.posix_only("uses ids that are names")
def test_ini_patch_roots(fresh_server, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (a, b, c):
        d.mkdir()
    ini = write_ini(
        tmp_path / "archive.ini",
        archive={"backend": "posix", "prefix": tmp_path / "p", "patch_roots": f"{a}:{b}"},
    )
    srv = fresh_server.start("roots", ARCHIVEINTERFACE_CONFIG=str(ini), PAI_PREFIX=None, prefix=tmp_path / "p")
    (b / "f").write_bytes(b"from b")
    resp = requests.patch(srv.id_url("fromb"), json={"path": str(b / "f")}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert requests.get(srv.id_url("fromb"), timeout=10).content == b"from b"
    (c / "f").write_bytes(b"from c")
    resp = requests.patch(srv.id_url("fromc"), json={"path": str(c / "f")}, timeout=10)
    assert resp.status_code == 403
    assert (c / "f").exists()


# --- the command line ---------------------------------------------------------------


def _cli_server(pool, name, args_fn, prefix, **settings):
    port = free_port()
    return pool.start(name, command=args_fn(port), port=port, prefix=prefix, **settings)


def _stop_gracefully(srv):
    rc = srv.stop(grace=30)
    assert rc != -signal.SIGKILL, "the service ignored SIGTERM:\n" + srv.log()


@pytest.mark.posix_only("uses ids that are names")
def test_cli_serves(fresh_server, tmp_path):
    prefix = tmp_path / "new" / "nested" / "prefix"  # does not exist yet
    srv = _cli_server(
        fresh_server,
        "cli",
        lambda port: [SERVE, "-t", "posix", "-p", str(port), "-a", "127.0.0.1", "--prefix", str(prefix)],
        prefix,
        PAI_PREFIX=None,
        PAI_BACKEND_TYPE=None,
    )
    assert prefix.is_dir()
    resp = requests.get(srv.url + "/", timeout=10)
    assert resp.json() == {"message": "Pacifica Archive Interface Up and Running"}
    assert requests.put(srv.id_url("cli.txt"), data=b"via cli", timeout=10).status_code == 201
    assert (prefix / "cli.txt").read_bytes() == b"via cli"
    _stop_gracefully(srv)


@pytest.mark.posix_only("uses ids that are names")
def test_module_entry_point_serves(fresh_server, tmp_path):
    prefix = tmp_path / "pm"
    srv = _cli_server(
        fresh_server,
        "pym",
        lambda port: [
            sys.executable,
            "-m",
            "pyai",
            "-t",
            "posix",
            "-p",
            str(port),
            "-a",
            "127.0.0.1",
            "--prefix",
            str(prefix),
        ],
        prefix,
        PAI_PREFIX=None,
    )
    assert requests.put(srv.id_url("m.txt"), data=b"via -m", timeout=10).status_code == 201
    assert (prefix / "m.txt").read_bytes() == b"via -m"
    _stop_gracefully(srv)


@pytest.mark.posix_only("uses ids that are names")
def test_cli_flags_override_env_and_ini(fresh_server, tmp_path):
    ini_prefix, env_prefix, flag_prefix = tmp_path / "i", tmp_path / "e", tmp_path / "f"
    ini = write_ini(
        tmp_path / "archive.ini",
        archive={"backend": "posix", "prefix": ini_prefix, "allow_overwrite": "true"},
    )
    srv = _cli_server(
        fresh_server,
        "flags",
        lambda port: [SERVE, "-c", str(ini), "-p", str(port), "-a", "127.0.0.1", "--prefix", str(flag_prefix)],
        flag_prefix,
        PAI_PREFIX=str(env_prefix),
        PAI_BACKEND_TYPE=None,
    )
    assert requests.put(srv.id_url("x"), data=b"1", timeout=10).status_code == 201
    assert (flag_prefix / "x").read_bytes() == b"1"
    assert not (env_prefix / "x").exists() and not (ini_prefix / "x").exists()
    # allow_overwrite still comes from the file given with -c
    assert requests.put(srv.id_url("x"), data=b"22", timeout=10).status_code == 201
    assert (flag_prefix / "x").read_bytes() == b"22"
    _stop_gracefully(srv)


# --- config errors ----------------------------------------------------------------


def _error_case(case, tmp_path):
    """(extra args, env settings, words of which one must be in the message)."""
    prefix = tmp_path / "ok-prefix"
    if case == "backend":
        return ["-t", "nosuch", "--prefix", str(prefix)], {}, ["nosuch"]
    if case == "prefix-under-file":
        blocker = tmp_path / "a-file"
        blocker.write_text("I am a file")
        return ["-t", "posix", "--prefix", str(blocker / "sub")], {}, ["prefix", str(blocker)]
    if case == "max-body":
        return ["-t", "posix", "--prefix", str(prefix)], {"PAI_MAX_BODY_SIZE": "lots"}, ["lots", "PAI_MAX_BODY_SIZE"]
    if case == "ini-bool":
        ini = write_ini(tmp_path / "bad.ini", archive={"allow_overwrite": "maybe"})
        return ["-c", str(ini), "-t", "posix", "--prefix", str(prefix)], {}, ["maybe", "allow_overwrite"]
    raise ValueError(case)


CASES = ["backend", "prefix-under-file", "max-body", "ini-bool"]


def _check_one_clear_line(rc, out, err, words):
    assert rc != 0, (out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert any(w.lower() in lines[0].lower() for w in words), lines[0]


@pytest.mark.parametrize("case", CASES)
def test_serve_config_error(impl, tmp_path, case):
    args, settings, words = _error_case(case, tmp_path)
    env = service_env(tmp_path, PYAI_IMPL=impl, **settings)
    rc, out, err = run_cli([SERVE, "-p", str(free_port()), "-a", "127.0.0.1", *args], env)
    _check_one_clear_line(rc, out, err, words)


@pytest.mark.parametrize("case", CASES)
def test_cmd_config_error(impl, tmp_path, case):
    args, settings, words = _error_case(case, tmp_path)
    env = service_env(tmp_path, PYAI_IMPL=impl, **settings)
    rc, out, err = run_cli([CMD, *args, "delete", "123"], env)
    _check_one_clear_line(rc, out, err, words)


def test_serve_config_error_leaves_no_server(impl, tmp_path):
    port = free_port()
    env = service_env(tmp_path, PYAI_IMPL=impl)
    rc, _, _ = run_cli(
        [SERVE, "-t", "nosuch", "-p", str(port), "-a", "127.0.0.1", "--prefix", str(tmp_path / "p")], env
    )
    assert rc != 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)


# --- pacifica-archiveinterface-cmd delete -----------------------------------------


@pytest.mark.posix_only("the command is run against a posix archive")
def test_cmd_delete(server, impl, tmp_path, uid):
    ids = [uid + "-1", uid + "-2"]
    for ident in ids:
        assert requests.put(server.id_url(ident), data=b"to delete", timeout=10).status_code == 201
    keep = uid + "-keep"
    assert requests.put(server.id_url(keep), data=b"keep", timeout=10).status_code == 201
    env = service_env(tmp_path, PYAI_IMPL=impl, PAI_BACKEND_TYPE="posix")
    rc, out, err = run_cli([CMD, "--prefix", str(server.prefix), "delete", *ids], env)
    assert rc == 0, (out, err)
    for ident in ids:
        assert not server.stored_path(ident).exists()
        assert requests.head(server.id_url(ident), timeout=10).status_code == 404
    assert server.stored_path(keep).read_bytes() == b"keep"


def test_cmd_delete_id2filename(impl, tmp_path, fresh_server):
    prefix = tmp_path / "idp"
    srv = fresh_server.start("cmdid", PAI_PREFIX=str(prefix), PAI_USE_ID2FILENAME="true")
    assert requests.put(srv.id_url(12345), data=b"gone soon", timeout=10).status_code == 201
    assert (prefix / "39" / "3039").exists()
    env = service_env(tmp_path, PYAI_IMPL=impl, PAI_USE_ID2FILENAME="true")
    rc, out, err = run_cli([CMD, "-t", "posix", "--prefix", str(prefix), "delete", "12345"], env)
    assert rc == 0, (out, err)
    assert not (prefix / "39" / "3039").exists()
    assert requests.head(srv.id_url(12345), timeout=10).status_code == 404


def test_cmd_uses_ini(tmp_path, impl):
    prefix = tmp_path / "cmdini"
    prefix.mkdir()
    (prefix / "abc").write_bytes(b"x")
    os.chmod(prefix / "abc", 0o444)
    ini = write_ini(tmp_path / "a.ini", archive={"backend": "posix", "prefix": prefix})
    env = service_env(tmp_path, PYAI_IMPL=impl, ARCHIVEINTERFACE_CONFIG=str(ini))
    rc, out, err = run_cli([CMD, "delete", "abc"], env)
    assert rc == 0, (out, err)
    assert not (prefix / "abc").exists()


# --- strict configuration: a typo stops the start (issue 23) --------------------------


def _typo_case(case, tmp_path):
    """(extra args, env settings, the words the one line must hold) of a configuration with one typo."""
    prefix = tmp_path / "typo-prefix"
    if case == "option":
        ini = tmp_path / "config.ini"
        ini.write_text(f"[archive]\nbackend = posix\nprefx = {prefix}\n")
        return ["-c", str(ini)], {"PAI_PREFIX": None}, ["config.ini: [archive] prefx", "did you mean prefix?"]
    if case == "section":
        ini = tmp_path / "config.ini"
        ini.write_text(f"[archiv]\nbackend = posix\nprefix = {prefix}\n")
        return ["-c", str(ini)], {"PAI_PREFIX": None}, ["[archiv]", "did you mean [archive]?"]
    if case == "variable":
        return [], {"PAI_PREFIX": None, "PAI_PREFX": str(prefix)}, ["PAI_PREFX", "did you mean PAI_PREFIX?"]
    raise ValueError(case)


TYPOS = ["option", "section", "variable"]


def _check_typo_refused(rc, out, err, words):
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err + out, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("case", TYPOS)
def test_serve_refuses_a_typo(impl, tmp_path, case):
    args, settings, words = _typo_case(case, tmp_path)
    port = free_port()
    env = service_env(tmp_path, PYAI_IMPL=impl, PAI_BACKEND_TYPE="posix", PAI_SWEEP_ON_START="false", **settings)
    # before the fix this served (/tmp, for the typo'd prefix): the timeout then fails the test
    rc, out, err = run_cli([SERVE, "-p", str(port), "-a", "127.0.0.1", *args], env, timeout=20)
    _check_typo_refused(rc, out, err, words)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)


@pytest.mark.parametrize("case", TYPOS)
def test_gunicorn_refuses_a_typo(impl, tmp_path, case):
    """The deployment kit's way in (gunicorn -c gunicorn.conf.py wsgi:app) refuses it too, with status 2."""
    args, settings, words = _typo_case(case, tmp_path)
    settings = dict(settings)
    if args:  # -c FILE: gunicorn has no such flag of ours, the file is named by the environment
        settings["ARCHIVEINTERFACE_CONFIG"] = args[1]
    env = service_env(tmp_path, PYAI_IMPL=impl, PAI_BACKEND_TYPE="posix", PAI_SWEEP_ON_START="false", **settings)
    rc, out, err = run_cli(gunicorn_command(free_port()), env, timeout=20)
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    line = next(line for line in err.splitlines() if "error" in line)
    for word in words:
        assert word in line, line


def test_cmd_refuses_a_typo(impl, tmp_path):
    prefix = tmp_path / "kept"
    prefix.mkdir()
    (prefix / "abc").write_bytes(b"x")
    ini = tmp_path / "config.ini"
    ini.write_text(f"[archive]\nprefix = {prefix}\n[posix]\nuse_id2filenam = true\n")
    env = service_env(tmp_path, PYAI_IMPL=impl)
    rc, out, err = run_cli([CMD, "-c", str(ini), "delete", "abc"], env)
    _check_typo_refused(rc, out, err, ["[posix] use_id2filenam", "did you mean use_id2filename?"])
    assert (prefix / "abc").exists()


@pytest.mark.posix_only("uses ids that are names")
def test_the_originals_ini_and_the_gunicorn_variables_are_accepted(fresh_server, tmp_path):
    """Every section and option of the original's INI file, and the PAI_* variables gunicorn_conf.py reads."""
    prefix = tmp_path / "orig"
    ini = tmp_path / "original.ini"
    ini.write_text(
        "[posix]\nuse_id2filename = false\n"
        "[hpss]\nuser = hpss.unix\nauth = /var/hpss/etc/hpss.unix.keytab\nsitename = example.com\naccept_latency = 5\n"
        "[hsm_sideband]\nsam_qfs_prefix = /data/pacifica/test/\nschema = samqfs1db\nhost = host\nuser = user\n"
        "password = pass\nport = 3306\n"
    )
    srv = fresh_server.start(
        "orig",
        ARCHIVEINTERFACE_CONFIG=str(ini),
        PAI_PREFIX=str(prefix),
        PAI_WORKERS="1",
        PAI_THREADS="4",
        PAI_LOG_LEVEL="info",
        PAI_ACCESS_LOG=str(tmp_path / "access.log"),
    )
    assert requests.put(srv.id_url("o.txt"), data=b"original", timeout=10).status_code == 201
    assert (prefix / "o.txt").read_bytes() == b"original"


# --- check-config --------------------------------------------------------------------


def test_check_config_accepts_a_good_configuration(impl, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("rw " + "a" * 24 + " writer\n")
    os.chmod(tokens, 0o600)
    ini = tmp_path / "site.ini"
    ini.write_text(f"[archive]\nprefix = {tmp_path / 'p'}\n[auth]\ntokens_file = {tokens}\n")
    env = service_env(tmp_path, PYAI_IMPL=impl)
    rc, out, err = run_cli([SERVE, "check-config", "-c", str(ini)], env)
    assert rc == 0, (out, err)
    assert len(out.splitlines()) == 1 and str(tmp_path / "p") in out, out
    assert not (tmp_path / "p").exists()  # a check creates nothing


def test_check_config_lists_every_problem(impl, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("rw short\n")
    os.chmod(tokens, 0o600)
    ini = tmp_path / "site.ini"
    ini.write_text(f"[archive]\nprefx = /srv/archive\nmax_body_size = lots\n[auth]\ntokens_file = {tokens}\n")
    env = service_env(tmp_path, PYAI_IMPL=impl, PAI_CHECKSUMM="md5")
    rc, out, err = run_cli([SERVE, "check-config", "-c", str(ini)], env)
    assert rc == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 4, err
    for words in (["prefx", "prefix?"], ["lots", "max_body_size"], ["PAI_CHECKSUMM", "PAI_CHECKSUM?"], ["tokens"]):
        assert sum(all(w in line for w in words) for line in lines) == 1, (words, err)


# --- the default prefix ----------------------------------------------------------------


@pytest.mark.posix_only("the default prefix is a posix directory")
def test_serving_the_default_prefix_is_warned_of(fresh_server, tmp_path):
    srv = fresh_server.start(
        "dflt", PAI_PREFIX=None, PAI_SWEEP_ON_START="false", PAI_TAPE_STATE_DIR=str(tmp_path / "state"), prefix="/tmp"
    )
    assert requests.get(srv.url + "/", timeout=10).status_code == 200
    warnings = [line for line in srv.log().splitlines() if "default prefix /tmp" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], srv.log()


@pytest.mark.posix_only("uses ids that are names")
def test_a_named_prefix_is_not_warned_of(fresh_server):
    srv = fresh_server.start("named")
    assert requests.get(srv.url + "/", timeout=10).status_code == 200
    assert "default prefix" not in srv.log()


# --- admin commands never guess the archive -------------------------------------------


ADMIN = [
    ["delete", "{name}"],
    ["verify", "{name}"],
    ["verify", "--all"],
    ["verify", "--all", "--add-missing"],
    ["sweep"],
    ["ls"],
    ["du"],
    ["stat", "{name}"],
]


@pytest.mark.parametrize("command", ADMIN, ids=lambda c: "-".join(c).replace("{name}", "id"))
def test_admin_commands_need_a_named_archive(impl, tmp_path, command):
    # a file of our own in /tmp: what the command would act on with the default prefix
    name = f"pyai-scratch-{os.getpid()}-{uuid.uuid4().hex}"
    scratch = Path("/tmp") / name
    scratch.write_bytes(b"not yours")
    try:
        env = service_env(tmp_path, PYAI_IMPL=impl)  # no PAI_PREFIX, no config file
        rc, out, err = run_cli([CMD, *[part.format(name=name) for part in command]], env)
        assert scratch.read_bytes() == b"not yours"
        assert rc == 2, (rc, out, err)
        assert out == "", out  # nothing was walked or verified
        lines = err.splitlines()
        assert len(lines) == 1 and "no archive named" in lines[0] and "--prefix" in lines[0], err
    finally:
        scratch.unlink(missing_ok=True)


def test_a_config_file_without_a_prefix_names_no_archive(impl, tmp_path):
    ini = tmp_path / "site.ini"
    ini.write_text("[archive]\nbackend = posix\n")
    name = f"pyai-scratch-{os.getpid()}-{uuid.uuid4().hex}"
    scratch = Path("/tmp") / name
    scratch.write_bytes(b"not yours")
    try:
        env = service_env(tmp_path, PYAI_IMPL=impl, ARCHIVEINTERFACE_CONFIG=str(ini))
        rc, out, err = run_cli([CMD, "delete", name], env)
        assert scratch.exists()
        assert rc == 2, (out, err)
        assert "no archive named" in err and str(ini) in err, err
    finally:
        scratch.unlink(missing_ok=True)


def test_pai_prefix_names_the_archive(impl, tmp_path):
    prefix = tmp_path / "envp"
    prefix.mkdir()
    (prefix / "gone").write_bytes(b"x")
    env = service_env(tmp_path, PYAI_IMPL=impl, PAI_PREFIX=str(prefix))
    rc, out, err = run_cli([CMD, "delete", "gone"], env)
    assert rc == 0, (out, err)
    assert not (prefix / "gone").exists()


# --- the original's flags ----------------------------------------------------------------


@pytest.mark.posix_only("uses ids that are names")
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_the_originals_cherrypy_config_is_accepted_and_ignored(fresh_server, tmp_path, how):
    prefix = tmp_path / "cp"
    cpconfig = tmp_path / "cpconfig.ini"
    cpconfig.write_text("[global]\nserver.socket_port: 1\n")  # would be a bad port, were it read
    flag = ["--cherrypy-config", str(cpconfig)] if how == "flag" else []
    settings = {"ARCHIVEINTERFACE_CPCONFIG": str(cpconfig)} if how == "environment" else {}
    srv = _cli_server(
        fresh_server,
        "cp",
        lambda port: [SERVE, *flag, "-t", "posix", "-p", str(port), "-a", "127.0.0.1", "--prefix", str(prefix)],
        prefix,
        PAI_PREFIX=None,
        **settings,
    )
    assert requests.put(srv.id_url("cp.txt"), data=b"cp", timeout=10).status_code == 201
    warnings = [line for line in srv.log().splitlines() if "is ignored" in line]
    assert len(warnings) == 1 and str(cpconfig) in warnings[0], srv.log()
    _stop_gracefully(srv)
