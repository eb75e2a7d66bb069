"""Command line: ``pacifica-archiveinterface`` (serve), ``pacifica-archiveinterface-cmd``
(administration) and ``pyai`` (both, as subcommands).

Flags are exported as the PAI_* environment variables before anything reads
the configuration, so flags beat the environment, which beats the INI file,
in the server and in every gunicorn worker alike.  An administration command
acts only on an archive that is named (never on the default prefix), and
``check-config`` checks a configuration without serving.
"""

import argparse
import os
import sys

from pyai import __version__
from pyai import config as config_module
from pyai.config import load as load_config
from pyai.errors import ArchiveError, ConfigError, describe

# The original's CherryPy settings file (its --cherrypy-config flag and this variable):
# accepted so that its command lines and units start pyai, and ignored (gunicorn serves).
CHERRYPY_CONFIG_ENV = "ARCHIVEINTERFACE_CPCONFIG"


def _archive_options(parser, default=None):
    parser.add_argument("-t", "--type", dest="backend", default=default, help="backend: posix, hpss or hsmsideband")
    parser.add_argument("--prefix", default=default, help="directory (or HPSS path) under which files are stored")
    parser.add_argument("-c", "--config", default=default, help="INI configuration file")


def _serve_options(parser):
    _archive_options(parser)
    parser.add_argument("-p", "--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("-a", "--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, help="threads per worker")
    parser.add_argument("--tokens-file", help="bearer tokens (ro/rw <token> lines): turns authentication on")
    parser.add_argument("--gunicorn-config", help="gunicorn settings file (default ./gunicorn.conf.py or pyai's)")
    parser.add_argument(
        "--cherrypy-config", metavar="CP_CONFIG", help="the original's CherryPy settings file: accepted and ignored"
    )


def _overrides(args):
    """The settings the flags give (None: not given)."""
    tokens_file = getattr(args, "tokens_file", None)  # a serve flag only
    return {"backend": args.backend, "prefix": args.prefix, "auth_tokens_file": tokens_file}


def _load(args, serving=False):
    """Validate the configuration with the flags applied, then export the flags as the
    environment every process (gunicorn's workers included) will read.

    Unless ``serving``, the archive must be named: an administration command reads or
    changes stored files, and the default prefix (/tmp) is nobody's archive.
    """
    tokens_file = getattr(args, "tokens_file", None)
    config = load_config(_overrides(args), config_file=args.config, prepare=False)
    if not serving and "prefix" in config.defaulted:
        raise ConfigError(_no_archive_named(config))
    if serving:  # the master makes the prefix once it listens (nothing is made for a busy port)
        config_module.check_prefix(config.prefix)  # but one it could not make is said before
    elif config.prefix != config_module.checked_prefix:
        config_module.prepare_prefix(config.prefix)
    if tokens_file:
        os.environ["PAI_AUTH_TOKENS_FILE"] = config.auth_tokens_file
    if args.backend:
        os.environ["PAI_BACKEND_TYPE"] = args.backend
    if args.prefix:
        os.environ["PAI_PREFIX"] = args.prefix
    if args.config:
        os.environ["ARCHIVEINTERFACE_CONFIG"] = os.path.abspath(args.config)
    return config


def _no_archive_named(config):
    where = f" ({config.config_file} has no [archive] prefix)" if config.config_file else ""
    return (
        f"no archive named{where}: give --prefix DIR, PAI_PREFIX, or a config file (-c FILE or "
        f"ARCHIVEINTERFACE_CONFIG) with [archive] prefix; the default {config.prefix} is not assumed"
    )


def _fail(prog, message):
    sys.stderr.write(f"{prog}: error: {message}\n")
    return 2


def _warn_cherrypy_config(args, prog):
    """The original's CherryPy settings file, by flag or environment: one warning line each."""
    given = []
    if getattr(args, "cherrypy_config", None):
        given.append(f"--cherrypy-config {args.cherrypy_config}")
    if os.environ.get(CHERRYPY_CONFIG_ENV):
        given.append(f"{CHERRYPY_CONFIG_ENV}={os.environ[CHERRYPY_CONFIG_ENV]}")
    for what in given:
        sys.stderr.write(
            f"{prog}: warning: {what} is ignored: pyai serves with gunicorn (-a/-p, --gunicorn-config; "
            "see docs/compatibility.md, Migrating from the original)\n"
        )


def serve(args, prog):
    from pyai.web.auth import check_config as check_auth

    _warn_cherrypy_config(args, prog)
    try:
        check_auth(_load(args, serving=True))
    except ConfigError as exc:
        return _fail(prog, exc)
    from pyai.server.serve import ArchiveServer

    options = {"bind": f"{args.address}:{args.port}"}
    if args.workers:
        options["workers"] = args.workers
    if args.threads:
        options["threads"] = args.threads
    ArchiveServer(options, args.gunicorn_config).run()
    return 0


def _archive(args):
    """The Archive a command names (ConfigError when it names none, or names it wrongly)."""
    from pyai.archive.service import Archive
    from pyai.backends import create_backend

    config = _load(args)
    return Archive(config, create_backend(config))


def delete(args, prog):
    try:
        archive = _archive(args)
    except ConfigError as exc:
        return _fail(prog, exc)
    status = 0
    for ident in args.ids:
        try:
            archive.delete(ident)
            print(f"{ident}: deleted")
        except ArchiveError as exc:
            print(f"{ident}: {exc.message}", file=sys.stderr)
            status = 1
    return status


def sweep(args, prog):
    from pyai.backends import create_backend

    try:
        config = _load(args)
        removed = create_backend(config).sweep()
    except ConfigError as exc:
        return _fail(prog, exc)
    except OSError as exc:  # the storage failing under the sweep: one line, not a traceback
        return _fail(prog, f"the sweep failed: {describe(exc)}")
    print(f"removed {removed} stale temporary file(s)")
    return 0


def verify(args, prog):
    from pyai.admin import verify as verifier

    if bool(args.ids) == args.all:
        return _fail(prog, "verify needs ids or --all (not both)")
    try:
        archive = _archive(args)
    except ConfigError as exc:
        return _fail(prog, exc)
    return verifier.run(archive, args.ids, args.all, add_missing=args.add_missing)


# -- operator tools: ls, du, stat (pyai.admin.listing, usage, fileinfo) ------------------


def inspect(args, prog):
    """ls, du and stat: open the archive named, then hand it to the tool's module."""
    try:
        archive = _archive(args)
    except ConfigError as exc:
        return _fail(prog, exc)
    return args.tool(archive, args)


def _inspect_parsers(commands):
    from pyai.admin import fileinfo, listing, usage

    ls = commands.add_parser("ls", help="list the ids stored (progress on stderr)")
    ls.add_argument("-l", "--long", action="store_true", help="size, mtime, media and the digests stored")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(run=inspect, tool=lambda archive, args: listing.run(archive, args.long, args.json))
    du = commands.add_parser("du", help="count the files stored and their bytes")
    du.add_argument("--media", action="store_true", help="also by media (disk, tape) and bytes per level")
    du.add_argument("--json", action="store_true", help="one JSON object")
    du.set_defaults(run=inspect, tool=lambda archive, args: usage.run(archive, args.media, args.json))
    st = commands.add_parser("stat", help="what HEAD says of an id, its stored digests and locality")
    st.add_argument("ident", metavar="ID")
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.set_defaults(run=inspect, tool=lambda archive, args: fileinfo.run(archive, args.ident, args.json))
    for parser in (ls, du, st):
        _archive_options(parser, default=argparse.SUPPRESS)  # accepted after the command too


def check_config(args, prog):
    """Validate the configuration and the tokens file as a start would, serving nothing and creating
    nothing: exit 0 with a one-line summary, or 2 with one line per problem."""
    from pyai.server.serve import check_config as problems_of

    problems = problems_of(args.config, overrides=_overrides(args))
    for problem in problems:
        sys.stderr.write(f"{prog}: error: {problem}\n")
    if problems:
        return 2
    config = load_config(_overrides(args), config_file=args.config, prepare=False)
    default = " (the default)" if "prefix" in config.defaulted else ""
    kinds = [f"tokens from {config.auth_tokens_file}"] if config.auth_tokens_file else []
    if config.auth_jwt_issuers:
        kinds.append(f"WLCG tokens of {len(config.auth_jwt_issuers)} issuer(s)")
    if config.auth_dn_header:
        kinds.append(f"client certificates' DNs from {config.auth_gridmap_file}")
    auth = " and ".join(kinds) or "no authentication"
    print(
        f"configuration ok: {config.config_file or 'no config file'}; backend {config.backend}, "
        f"prefix {config.prefix}{default}, {auth}"
    )
    return 0


def _check_parser(prog):
    parser = argparse.ArgumentParser(
        prog=f"{prog} check-config", description="Check the configuration and the tokens file; serve nothing."
    )
    _serve_options(parser)  # the serve command line, checked as it would be served
    return parser


def _cmd_parser(prog):
    parser = argparse.ArgumentParser(prog=prog, description="Administer a pyai archive.")
    _archive_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    remove = commands.add_parser("delete", help="delete files by id")
    remove.add_argument("ids", nargs="+", metavar="ID")
    _archive_options(remove, default=argparse.SUPPRESS)  # accepted after the command too
    remove.set_defaults(run=delete)
    clean = commands.add_parser("sweep", help="remove temporary files left by interrupted uploads")
    clean.set_defaults(run=sweep)
    _archive_options(clean, default=argparse.SUPPRESS)
    check = commands.add_parser("verify", help="re-read files and compare them with their stored checksums")
    check.add_argument("ids", nargs="*", metavar="ID")
    check.add_argument("--all", action="store_true", help="every file of the archive")
    check.add_argument(
        "--add-missing", action="store_true", help="compute and keep the configured checksums a file lacks"
    )
    check.set_defaults(run=verify)
    _archive_options(check, default=argparse.SUPPRESS)
    _inspect_parsers(commands)
    validate = commands.add_parser("check-config", help="check the configuration and the tokens file")
    validate.add_argument("--tokens-file", help="bearer tokens file to check")
    validate.set_defaults(run=check_config)
    _archive_options(validate, default=argparse.SUPPRESS)
    return parser


def serve_main(argv=None):
    """pacifica-archiveinterface: serve the archive."""
    prog = "pacifica-archiveinterface"
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "check-config":
        return check_config(_check_parser(prog).parse_args(argv[1:]), prog)
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve a pyai archive over HTTP (check-config [options]: only check)."
    )
    _serve_options(parser)
    parser.add_argument("--version", action="version", version=f"pyai {__version__}")
    return serve(parser.parse_args(argv), prog)


def cmd_main(argv=None):
    """pacifica-archiveinterface-cmd: administration commands."""
    prog = "pacifica-archiveinterface-cmd"
    args = _cmd_parser(prog).parse_args(argv)
    return args.run(args, prog)


def main(argv=None):
    """pyai serve | check-config | delete | sweep | verify | ls | du | stat."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        return serve_main(argv[1:])
    if argv and argv[0] == "check-config":
        return serve_main(argv)
    if argv and argv[0] in ("delete", "sweep", "verify", "ls", "du", "stat"):
        return cmd_main(argv)
    sys.stderr.write(
        "usage: pyai serve [options] | pyai check-config [options] | pyai delete ID... | pyai sweep"
        " | pyai verify ID...|--all | pyai ls | pyai du | pyai stat ID   (--help on each)\n"
    )
    return 2
