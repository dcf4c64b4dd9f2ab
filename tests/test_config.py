"""Configuration: the shipped files, environment overrides, and one-line errors at start-up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from celery import Celery

from app.core.config import PROJECT_ROOT, ConfigError, Settings, load_settings

SHIPPED = PROJECT_ROOT / "config"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of the shipped config/ directory that a test may break."""
    return Path(shutil.copytree(SHIPPED, tmp_path / "config"))


def load(directory: Path, **env: str) -> Settings:
    return load_settings(directory, environ=env)


def edit(directory: Path, filename: str, change: Callable[[dict[str, Any]], None]) -> Path:
    path = directory / filename
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any ADMIN_MIT_ setting (the test session sets some)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ADMIN_MIT_")}
    return {**env, **extra}


# --- the shipped defaults --------------------------------------------------------------------

def test_shipped_files_give_the_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where the command runs, not where the code is

    settings = load(SHIPPED)

    assert settings.redis.embedded is True
    assert settings.redis.db == 2
    assert settings.instance_dir == tmp_path / "instance"
    assert settings.database_url == f"sqlite:///{tmp_path / 'instance' / 'admin-mit.db'}"
    assert settings.celery.timezone == "Asia/Shanghai"
    assert (settings.celery.task_serializer, settings.celery.result_serializer) == ("json", "json")
    assert settings.celery.accept_content == ["json"]


def test_embedded_redis_urls_are_understood_by_celery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Broker and result backend both reach the private server's unix socket, in db 2."""
    monkeypatch.chdir(tmp_path)
    settings = load(SHIPPED)
    socket_path = str(tmp_path / "instance" / "redis.sock")
    app = Celery(broker=settings.broker_url, backend=settings.result_backend)

    assert app.backend.connparams["path"] == socket_path
    assert app.backend.connparams["db"] == 2
    with app.connection_for_write() as conn:
        assert conn.transport_cls == "redis"
        assert socket_path in conn.as_uri()


def test_guide_keys_are_in_the_shipped_files() -> None:
    redis_file = yaml.safe_load((SHIPPED / "redis.yaml").read_text(encoding="utf-8"))
    app_file = yaml.safe_load((SHIPPED / "app.yaml").read_text(encoding="utf-8"))

    assert {"host", "port", "password", "db"} <= set(redis_file["redis"])
    assert {"broker_url", "result_backend", "task_serializer", "result_serializer", "accept_content",
            "timezone"} <= set(app_file["celery"])


def test_the_guide_example_values_are_accepted(config_dir: Path) -> None:
    """The guide's own redis.yaml / app.yaml blocks load as written."""
    (config_dir / "redis.yaml").write_text(
        'redis:\n  host: "172.30.3.135"\n  port: 6379\n  password: "your_password"\n  db: 2  # Celery 使用 db 2\n',
        encoding="utf-8",
    )
    edit(config_dir, "app.yaml", lambda data: data["celery"].update({
        "broker_url": "redis://172.30.3.135:6379/2",
        "result_backend": "redis://172.30.3.135:6379/2",
    }))

    settings = load(config_dir)

    assert settings.redis.password == "your_password"
    assert settings.broker_url == settings.result_backend == "redis://172.30.3.135:6379/2"


def test_external_redis_urls_are_derived_from_redis_yaml(config_dir: Path) -> None:
    settings = load(config_dir, ADMIN_MIT_REDIS__EMBEDDED="false", ADMIN_MIT_REDIS__HOST="cache.internal",
                    ADMIN_MIT_REDIS__PORT="6380", ADMIN_MIT_REDIS__PASSWORD="p@ss/word", ADMIN_MIT_REDIS__DB="3")

    expected = "redis://:p%40ss%2Fword@cache.internal:6380/3"
    assert settings.broker_url == settings.result_backend == settings.redis_url == expected
    assert Celery(backend=expected).backend.connparams["password"] == "p@ss/word"


# --- environment overrides -------------------------------------------------------------------

@pytest.mark.parametrize(("variable", "value", "read", "expected"), [
    ("ADMIN_MIT_REDIS__PORT", "6380", lambda s: s.redis.port, 6380),
    ("ADMIN_MIT_REDIS__DB", "0", lambda s: s.redis.db, 0),
    ("ADMIN_MIT_REDIS__EMBEDDED", "false", lambda s: s.redis.embedded, False),
    ("ADMIN_MIT_DATABASE__ECHO", "true", lambda s: s.database.echo, True),
    ("ADMIN_MIT_PROBES__DISPATCH_INTERVAL_SECONDS", "0.5", lambda s: s.probes.dispatch_interval_seconds, 0.5),
    ("ADMIN_MIT_CELERY__ACCEPT_CONTENT", "[json, msgpack]", lambda s: s.celery.accept_content, ["json", "msgpack"]),
    ("ADMIN_MIT_CELERY__TIMEZONE", "UTC", lambda s: s.celery.timezone, "UTC"),
    ("ADMIN_MIT_CELERY__BROKER_URL", "redis://10.0.0.5:6379/4", lambda s: s.broker_url, "redis://10.0.0.5:6379/4"),
    ("ADMIN_MIT_CELERY__WORKER_MAX_TASKS_PER_CHILD", "1000",
     lambda s: s.celery.model_extra["worker_max_tasks_per_child"], 1000),
    ("ADMIN_MIT_APP__LOG_LEVEL", "debug", lambda s: s.app.log_level, "DEBUG"),
    ("ADMIN_MIT_DATABASE__URL", "postgresql+psycopg://u:p@db:5432/ops", lambda s: s.database_url,
     "postgresql+psycopg://u:p@db:5432/ops"),
    # Text settings stay exactly what was typed, even when YAML would read them otherwise.
    ("ADMIN_MIT_REDIS__PASSWORD", "12345", lambda s: s.redis.password, "12345"),
    ("ADMIN_MIT_REDIS__PASSWORD", "0123", lambda s: s.redis.password, "0123"),
    ("ADMIN_MIT_REDIS__PASSWORD", "true", lambda s: s.redis.password, "true"),
    ("ADMIN_MIT_REDIS__PASSWORD", "null", lambda s: s.redis.password, "null"),
    ("ADMIN_MIT_REDIS__PASSWORD", "a: b #c", lambda s: s.redis.password, "a: b #c"),
    ("ADMIN_MIT_REDIS__HOST", "10.0.0.1", lambda s: s.redis.host, "10.0.0.1"),
    ("ADMIN_MIT_METRICS__TOKEN", "0123" * 8, lambda s: s.metrics.token, "0123" * 8),
])
def test_environment_overrides_the_files(config_dir: Path, variable: str, value: str,
                                         read: Callable[[Settings], Any], expected: Any) -> None:
    assert read(load(config_dir, **{variable: value})) == expected


def test_relative_paths_are_taken_from_the_working_directory(config_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "site"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    settings = load(config_dir, ADMIN_MIT_APP__INSTANCE_PATH="var/run-1",
                    ADMIN_MIT_DATABASE__URL="sqlite:///data/x.db")

    assert settings.instance_dir == workdir / "var" / "run-1"
    assert settings.database_url == f"sqlite:///{workdir / 'data' / 'x.db'}"
    assert settings.embedded_redis_socket == workdir / "var" / "run-1" / "redis.sock"


def test_an_empty_database_url_is_a_sqlite_file_in_the_instance_directory(config_dir: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    default = load(config_dir, ADMIN_MIT_DATABASE__URL="")
    moved = load(config_dir, ADMIN_MIT_DATABASE__URL="", ADMIN_MIT_APP__INSTANCE_PATH="/srv/admin-mit")

    assert default.database_url == f"sqlite:///{tmp_path / 'instance' / 'admin-mit.db'}"
    assert moved.database_url == "sqlite:////srv/admin-mit/admin-mit.db"
    assert Settings().database.url == ""  # also the built-in default, without any file
    shipped = load(config_dir, ADMIN_MIT_APP__INSTANCE_PATH="/srv/admin-mit")  # config/database.yaml as shipped
    assert shipped.database_url == "sqlite:////srv/admin-mit/admin-mit.db"


def test_the_config_directory_is_looked_up_in_the_working_directory(config_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(config_dir.parent)

    assert load_settings(environ={}).config_dir == config_dir
    moved = config_dir.rename(config_dir.parent / "etc")
    assert load_settings(environ={"ADMIN_MIT_CONFIG_DIR": "etc"}).config_dir == moved


def test_without_a_config_directory_start_up_stops_in_one_line(tmp_path: Path) -> None:
    """Run from a directory without config/ (and no ADMIN_MIT_CONFIG_DIR): nothing is read
    from where the code lives; the one line says what to do."""
    done = subprocess.run([sys.executable, "-m", "app", "tenant", "list"], cwd=tmp_path, env=clean_environ(),
                          capture_output=True, text=True, timeout=60)

    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1, done.stderr
    assert lines[0] == (f"admin-mit: error: {tmp_path / 'config'}: configuration directory not found "
                        "(run from the directory that holds config/, or set ADMIN_MIT_CONFIG_DIR)")
    assert not (tmp_path / "instance").exists()


def test_config_dir_comes_from_the_environment(config_dir: Path) -> None:
    edit(config_dir, "redis.yaml", lambda data: data["redis"].update(port=7000))

    settings = load_settings(environ={"ADMIN_MIT_CONFIG_DIR": str(config_dir)})

    assert settings.redis.port == 7000
    assert settings.config_dir == config_dir


# --- errors: one line, naming the file (or variable) and the key -----------------------------

def _break(filename: str, text: str) -> Callable[[Path], str]:
    def apply(directory: Path) -> str:
        (directory / filename).write_text(text, encoding="utf-8")
        return str(directory / filename)
    return apply


def _remove(filename: str) -> Callable[[Path], str]:
    def apply(directory: Path) -> str:
        (directory / filename).unlink()
        return str(directory / filename)
    return apply


FILE_ERRORS = {
    "missing file": (_remove("redis.yaml"), ["file not found"]),
    "bad yaml": (_break("app.yaml", "celery:\n  broker_url: [unclosed\n"), ["invalid YAML", "line"]),
    "tab indentation": (_break("redis.yaml", "redis:\n\thost: x\n"), ["invalid YAML", "line 2"]),
    "wrong type": (_break("redis.yaml", 'redis:\n  port: "six"\n'), ["redis.port", "integer"]),
    "unquoted number as password": (_break("redis.yaml", "redis:\n  password: 12345\n"),
                                    ["redis.password", "quotes"]),
    "out of range": (_break("redis.yaml", "redis:\n  db: 16\n"), ["redis.db"]),
    "unknown key": (_break("redis.yaml", "redis:\n  hots: 10.0.0.1\n"), ["redis.hots", "unknown key"]),
    "unknown section": (_break("database.yaml", "databse:\n  url: sqlite://\n"), ["databse", "unknown key"]),
    "section not a mapping": (_break("app.yaml", "celery: redis://x\n"), ["celery", "mapping"]),
    "unknown celery setting": (_break("app.yaml", "celery:\n  worker_max_task_per_child: 10\n"),
                               ["worker_max_task_per_child", "not a Celery setting"]),
    "bad timezone": (_break("app.yaml", "celery:\n  timezone: Asia/Shang_hai\n"),
                     ["celery.timezone", "Asia/Shang_hai"]),
    "accept_content not a list": (_break("app.yaml", "celery:\n  accept_content: json\n"),
                                  ["celery.accept_content", "list"]),
}


@pytest.mark.parametrize("case", FILE_ERRORS, ids=list(FILE_ERRORS))
def test_file_problems_raise_one_line_naming_file_and_key(config_dir: Path, case: str) -> None:
    breaker, fragments = FILE_ERRORS[case]
    path = breaker(config_dir)

    with pytest.raises(ConfigError) as raised:
        load(config_dir)

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(path)
    for fragment in fragments:
        assert fragment in message


ENV_ERRORS = {
    "wrong type": ("ADMIN_MIT_REDIS__PORT", "six", ["redis.port", "integer"]),
    "bad bool": ("ADMIN_MIT_REDIS__EMBEDDED", "maybe", ["redis.embedded", "boolean"]),
    "unknown key": ("ADMIN_MIT_REDIS__HOTS", "x", ["redis.hots", "unknown key"]),
    "unknown section": ("ADMIN_MIT_REDDIS__HOST", "x", ["reddis", "unknown key"]),
    "unknown celery setting": ("ADMIN_MIT_CELERY__BROKER_URI", "redis://x", ["broker_uri", "not a Celery setting"]),
    "bad timezone": ("ADMIN_MIT_CELERY__TIMEZONE", "Mars/Olympus", ["celery.timezone", "Mars/Olympus"]),
    "bad log level": ("ADMIN_MIT_APP__LOG_LEVEL", "loud", ["app.log_level"]),
    "short secret key": ("ADMIN_MIT_APP__SECRET_KEY", "too-short", ["app.secret_key", "at least 32"]),
    "short metrics token": ("ADMIN_MIT_METRICS__TOKEN", "s3cret-x", ["metrics.token", "at least 32"]),
    "metrics token with a line break": ("ADMIN_MIT_METRICS__TOKEN", "s3cret" * 6 + "\n", ["metrics.token", "spaces"]),
    "weak password hash": ("ADMIN_MIT_API__PASSWORD_HASH_MEMORY_KIB", "1024", ["api.password_hash_memory_kib"]),
    "database url not a url": ("ADMIN_MIT_DATABASE__URL", "notaurl", ["database.url", "not a database URL"]),
    "database port not a number": ("ADMIN_MIT_DATABASE__URL", "postgresql+psycopg://u:s3cret@db:port/x",
                                   ["database.url", "port is not a number"]),
    "database port out of range": ("ADMIN_MIT_DATABASE__URL", "postgresql+psycopg://u@db:70000/x",
                                   ["database.url", "port 70000 is out of range"]),
    "unknown database driver": ("ADMIN_MIT_DATABASE__URL", "mysql+nosuchdriver://root@db/x",
                                ["database.url", "unknown database driver 'mysql+nosuchdriver'"]),
    "database driver not installed": ("ADMIN_MIT_DATABASE__URL", "postgresql://u@db/x",
                                      ["database.url", "psycopg2", "postgresql+psycopg://"]),
}


@pytest.mark.parametrize("case", ENV_ERRORS, ids=list(ENV_ERRORS))
def test_environment_problems_raise_one_line_naming_variable_and_key(config_dir: Path, case: str) -> None:
    variable, value, fragments = ENV_ERRORS[case]

    with pytest.raises(ConfigError) as raised:
        load(config_dir, **{variable: value})

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"environment {variable}")
    for fragment in fragments:
        assert fragment in message
    assert "s3cret" not in message


# --- start-up with a broken configuration ----------------------------------------------------

STARTUP_COMMANDS = {
    "celery worker": [sys.executable, "-m", "celery", "-A", "celery_worker.celery", "worker"],
    "celery beat": [sys.executable, "-m", "celery", "-A", "celery_worker.celery", "beat"],
    "admin-mit probe list": [sys.executable, "-m", "app", "probe", "list"],
    "admin-mit up": [sys.executable, "-m", "app", "up"],
}
BROKEN = {
    "wrong type": ("redis.yaml", 'redis:\n  port: "six"\n', "redis.port"),
    "bad yaml": ("app.yaml", "celery:\n  timezone: [Asia/Shanghai\n", "invalid YAML"),
}


@pytest.mark.parametrize(("command", "broken"), [
    ("celery worker", "wrong type"),
    ("celery worker", "bad yaml"),
    ("celery beat", "wrong type"),
    ("admin-mit probe list", "bad yaml"),
    ("admin-mit up", "wrong type"),
])
def test_startup_with_broken_config_prints_one_line_and_stops(config_dir: Path, tmp_path: Path,
                                                            command: str, broken: str) -> None:
    filename, text, key = BROKEN[broken]
    (config_dir / filename).write_text(text, encoding="utf-8")
    env = clean_environ(ADMIN_MIT_CONFIG_DIR=str(config_dir), ADMIN_MIT_APP__INSTANCE_PATH=str(tmp_path / "i"))

    done = subprocess.run(STARTUP_COMMANDS[command], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=60)

    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1, done.stderr
    assert str(config_dir / filename) in lines[0]
    assert key in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


def test_an_empty_secret_key_is_generated_once_owner_only_and_kept(config_dir: Path, tmp_path: Path) -> None:
    from app.core.secret_key import resolve_secret_key

    settings = load(config_dir, ADMIN_MIT_APP__INSTANCE_PATH=str(tmp_path))
    first = resolve_secret_key(settings)
    assert len(first) >= 32 and resolve_secret_key(settings) == first
    key_file = tmp_path / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    configured = "k" * 40
    assert resolve_secret_key(load(config_dir, ADMIN_MIT_APP__INSTANCE_PATH=str(tmp_path),
                                   ADMIN_MIT_APP__SECRET_KEY=configured)) == configured


# --- the instance directory ------------------------------------------------------------------

def test_the_instance_directory_is_created_and_checked_writable(config_dir: Path, tmp_path: Path) -> None:
    from app.core.config import ensure_instance_dir

    settings = load(config_dir, ADMIN_MIT_APP__INSTANCE_PATH=str(tmp_path / "a" / "b"))

    assert ensure_instance_dir(settings) == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the write check leaves nothing


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda tmp: "/proc/x", "cannot create /proc/x: No such file or directory"),
    (lambda tmp: (tmp / "file").touch() or str(tmp / "file" / "sub"), "Not a directory"),
    (lambda tmp: (tmp / "file").touch() or str(tmp / "file"), "exists and is not a directory"),
], ids=["impossible", "parent is a file", "is a file"])
def test_an_unusable_instance_directory_is_one_line(config_dir: Path, tmp_path: Path,
                                                    make: Callable[[Path], str], fragment: str) -> None:
    from app.core.config import ensure_instance_dir

    settings = load(config_dir, ADMIN_MIT_APP__INSTANCE_PATH=make(tmp_path))

    with pytest.raises(ConfigError) as raised:
        ensure_instance_dir(settings)

    assert str(raised.value).startswith("app.instance_path: ")
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)
