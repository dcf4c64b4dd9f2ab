"""YAML files + environment variables -> one typed, validated ``Settings`` object.

Three files are read from the config directory (``config/`` in the working
directory, or ``$ADMIN_MIT_CONFIG_DIR``): ``app.yaml``, ``redis.yaml`` and
``database.yaml``. Nothing is looked up where the code is installed, so an
installed copy (``pip install .``) runs from any directory that holds ``config/``.
Each top-level key is a section. Any value can be overridden by an environment
variable named ``ADMIN_MIT_<SECTION>__<KEY>`` (``ADMIN_MIT_REDIS__HOST=cache``,
``ADMIN_MIT_CELERY__BROKER_URL=redis://…``); the value is read as a YAML scalar,
so ``false``, ``6380`` and ``[json]`` mean what they look like.

Every problem — a missing file, bad YAML, an unknown key, a wrong type — raises
``ConfigError`` whose message is one line naming the file (or variable) and the
key, so start-up can print it and stop.

Relative paths — ``app.instance_path``, ``ADMIN_MIT_CONFIG_DIR`` and the file of a
``sqlite:///relative/path`` URL — are taken from the working directory of the
process that loads the settings. An empty ``database.url`` is the SQLite file
``admin-mit.db`` in the instance directory, so moving the instance moves it too.
"""

from __future__ import annotations

import os
import tempfile
import zoneinfo
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The source tree this module was loaded from. Only the tests use it (as the working
# directory of the processes they start); nothing at run time is found relative to it.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "ADMIN_MIT_"
CONFIG_DIR_VARIABLE = "ADMIN_MIT_CONFIG_DIR"
DEFAULT_CONFIG_DIR = "config"
CONFIG_FILES = ("app.yaml", "redis.yaml", "database.yaml")
DEFAULT_DATABASE_FILE = "admin-mit.db"


class ConfigError(Exception):
    """A configuration problem, described in one line."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AppSection(_Section):
    instance_path: str = "instance"
    log_level: str = "INFO"
    secret_key: str = ""

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be at least 32 characters (or empty to generate one)")
        return value


class RedisSection(_Section):
    embedded: bool = True
    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    password: str = ""
    db: int = Field(2, ge=0, le=15)


class CelerySection(BaseModel):
    """The guide's Celery keys, plus any other valid Celery setting name (lower case)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    broker_url: str = ""
    result_backend: str = ""
    task_serializer: str = "json"
    result_serializer: str = "json"
    accept_content: list[str] = ["json"]
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _extra_keys_are_celery_settings(self) -> "CelerySection":
        from celery.app.defaults import NAMESPACES, flatten

        known = {name for name, _ in flatten(NAMESPACES)}
        for key in self.model_extra or {}:
            if key not in known:
                raise ValueError(f"{key}: not a Celery setting")
        return self


def check_database_url(value: str) -> None:
    """Raise ``ValueError`` (one line, no password) unless SQLAlchemy can use ``value``:
    it parses, its port is a port, and its dialect and driver are installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    example = "e.g. sqlite:///instance/admin-mit.db or postgresql+psycopg://USER@HOST:5432/DB"
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(f"not a database URL ({example})") from None
    except ValueError:  # the port is not a number
        raise ValueError("the port is not a number") from None
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ValueError(f"port {url.port} is out of range (1-65535)")
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise ValueError(f"unknown database driver {url.drivername!r} ({example})") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        hint = " (for psycopg 3 write postgresql+psycopg://)" if url.get_backend_name() == "postgresql" else ""
        raise ValueError(f"{url.drivername}:// needs the Python module {exc.name or exc!s}, "
                         f"which is not installed{hint}") from None


class DatabaseSection(_Section):
    # Empty: the SQLite file admin-mit.db in the instance directory.
    url: str = ""
    echo: bool = False
    pool_size: int = Field(5, ge=1, le=200)

    @field_validator("url")
    @classmethod
    def _usable_url(cls, value: str) -> str:
        if value:
            check_database_url(value)
        return value


class ProbesSection(_Section):
    dispatch_interval_seconds: float = Field(1.0, gt=0, le=60)
    # Slots due within this many seconds are claimed now and handed to a worker, which
    # starts each at its slot: the tick's granularity does not delay the runs.
    dispatch_lookahead_seconds: float = Field(1.5, ge=0, le=60)
    dispatch_batch_size: int = Field(50, ge=1, le=1000)
    dispatch_max_claim: int = Field(5000, ge=1)
    max_queue_backlog: int = Field(100, ge=1)  # messages, each of up to dispatch_batch_size runs
    # A worker process runs this many probes at once on its event loop; a task handing it
    # more waits (its message stays in the queue for another worker) until some finish.
    max_in_flight: int = Field(2000, ge=1, le=50000)
    # A claimed slot not stored within its probe's timeout plus this margin is handed to
    # another worker (at most max_reissues times) while the slot is still current.
    lease_margin_seconds: float = Field(3.0, gt=0, le=300)
    max_reissues: int = Field(2, ge=0, le=10)
    # A slot past its probe's next slot is counted as lost this long after, so results
    # still waiting in a worker's buffer (database outage) are not counted as lost.
    loss_grace_seconds: float = Field(30.0, ge=0, le=3600)
    # Results are written in micro-batches: every write_interval_ms or write_batch_rows rows.
    write_interval_ms: int = Field(100, ge=1, le=10000)
    write_batch_rows: int = Field(500, ge=1, le=10000)
    # Results kept per worker process while the database is down; beyond it the oldest
    # are dropped and counted as unwritten.
    write_buffer_max_rows: int = Field(20000, ge=1)
    min_interval_seconds: int = Field(5, ge=1)
    default_timeout_seconds: float = Field(10.0, gt=0)
    status_cache_ttl_seconds: int = Field(86400, ge=60)
    cleanup_batch_size: int = Field(5000, ge=1)
    # NetworkProbeTask's retry policy (the guide's: 3 retries, 60 s doubling, 600 s cap, jitter).
    max_retries: int = Field(3, ge=0, le=20)
    retry_backoff_seconds: int = Field(60, ge=1)
    retry_backoff_max_seconds: int = Field(600, ge=1)
    retry_jitter: bool = True

    @model_validator(mode="after")
    def _lookahead_within_an_interval(self) -> "ProbesSection":
        if self.dispatch_lookahead_seconds >= self.min_interval_seconds:
            raise ValueError(f"dispatch_lookahead_seconds: must be shorter than min_interval_seconds "
                             f"({self.min_interval_seconds})")
        return self


class RetentionSection(_Section):
    """How long each level of a probe's history is kept (days; None: forever).

    ``raw_days`` is the ``days`` the daily ``cleanup-old-probe-results`` beat entry passes to
    ``cleanup_old_results``; the rollups (``app.services.rollups``) are pruned by ``prune-probe-rollups``.
    """

    raw_days: int = Field(30, ge=1)
    minute_days: int | None = Field(90, ge=1)
    hour_days: int | None = Field(730, ge=1)
    day_days: int | None = Field(None, ge=1)


class ApiSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64)  # gunicorn processes `admin-mit up` runs
    # Threads per gunicorn process (gthread): a live output stream holds one while it is open.
    threads: int = Field(8, ge=1, le=256)
    # Reverse proxies in front that set X-Forwarded-For/-Proto; 0 trusts no such header.
    trusted_proxies: int = Field(0, ge=0, le=5)
    access_token_minutes: int = Field(15, ge=1, le=1440)
    refresh_token_days: int = Field(7, ge=1, le=365)
    # Failed logins within login_window_seconds before further attempts answer 429.
    login_max_failures: int = Field(5, ge=1)
    login_max_failures_per_ip: int = Field(20, ge=1)
    login_window_seconds: int = Field(900, ge=1)
    # Argon2id cost of a password hash (argon2-cffi's defaults): each login or password
    # change uses this much memory and CPU time. Lower it only on small machines.
    password_hash_time_cost: int = Field(3, ge=1, le=20)
    password_hash_memory_kib: int = Field(65536, ge=8192, le=4 * 1024 * 1024)


class AlertsSection(_Section):
    # Results stored longer ago than this and never evaluated (the alerts queue was down)
    # are not evaluated any more: an alert about an hour-old failure helps nobody.
    evaluation_lookback_seconds: int = Field(3600, ge=60)
    # A delivery task holds a notification this long; past it (the worker died mid-send)
    # another worker sends it. Longer than send_timeout_seconds.
    delivery_lease_seconds: float = Field(60.0, gt=0, le=3600)
    send_timeout_seconds: float = Field(10.0, gt=0, le=300)
    # Failed sends retry after retry_backoff_seconds, doubling up to the cap, with full
    # jitter, until delivery_deadline_seconds after the notification was written.
    retry_backoff_seconds: float = Field(5.0, gt=0)
    retry_backoff_max_seconds: float = Field(300.0, gt=0)
    delivery_deadline_seconds: int = Field(3600, ge=1)
    # Consecutive failed sends after which a channel is shown as failing.
    failing_after: int = Field(3, ge=1)
    # Where people open the system: links in messages start here (empty: the API's path only).
    public_url: str = ""

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> "AlertsSection":
        if self.delivery_lease_seconds <= self.send_timeout_seconds:
            raise ValueError(f"delivery_lease_seconds: must be longer than send_timeout_seconds "
                             f"({self.send_timeout_seconds:g})")
        return self


class AnsibleSection(_Section):
    """Playbook runs on the ``ansible`` queue (docs/ansible.md)."""

    # Each run's private directory (inventory, playbook, key FIFO) is made here and removed
    # when the run ends. Empty: ``<instance>/ansible-runs``. Local disk of the worker.
    runs_dir: str = ""
    # Project playbooks are files under this directory on the workers' disk; a project
    # directory outside it is refused. Empty: project playbooks are off.
    projects_root: str = ""
    # SSH host keys: checked against known_hosts_file (empty: the worker user's ~/.ssh/known_hosts);
    # an unknown key makes the host unreachable. "accept_new" records a first key, then checks it;
    # "off" trusts any key (ansible-runner's own default, not ours).
    host_key_checking: Literal["strict", "accept_new", "off"] = "strict"
    known_hosts_file: str = ""
    # Executions of one tenant running at once; more wait as ``pending`` (not refused).
    max_concurrent_per_tenant: int = Field(2, ge=1, le=1000)
    # Defaults for a run that names none; a request may ask for less, never more.
    default_timeout_seconds: int = Field(3600, ge=1)
    max_timeout_seconds: int = Field(86400, ge=1)
    default_idle_timeout_seconds: int = Field(600, ge=1)
    # SIGTERM first, SIGKILL to the whole process group this long after (cancel, timeouts).
    kill_grace_seconds: float = Field(2.0, gt=0, le=60)
    # stdout and data of one event are cut to this many bytes (the stored event says so).
    max_event_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Events are written and published every flush_interval_ms or every flush_events.
    flush_interval_ms: int = Field(250, ge=10, le=10_000)
    flush_events: int = Field(1000, ge=1, le=100_000)
    # A running execution whose worker has not written a heartbeat for this long is lost.
    heartbeat_seconds: float = Field(5.0, gt=0, le=300)
    lost_after_seconds: float = Field(60.0, gt=0)
    # How long a finished execution's live stream stays in Redis (the database keeps all).
    stream_ttl_seconds: int = Field(3600, ge=1)

    @model_validator(mode="after")
    def _heartbeats_before_loss(self) -> "AnsibleSection":
        if self.lost_after_seconds <= 2 * self.heartbeat_seconds:
            raise ValueError(f"lost_after_seconds: must be more than twice heartbeat_seconds "
                             f"({self.heartbeat_seconds:g})")
        if self.default_timeout_seconds > self.max_timeout_seconds:
            raise ValueError(f"default_timeout_seconds: must not exceed max_timeout_seconds "
                             f"({self.max_timeout_seconds})")
        return self


class MetricsSection(_Section):
    """``GET /metrics``'s own scrape credential (``app.services.metrics.is_scrape_token``).

    A bearer token that reads ``/metrics`` only, with every tenant and the platform's series;
    no API route accepts it. Empty: off (tenants' API tokens and logins still scrape).
    """

    token: str = ""

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if any(char.isspace() for char in value):
            raise ValueError("must not contain spaces or line breaks")
        if value and len(value) < 32:
            # The value itself is never part of the message: it is a secret.
            raise ValueError("must be at least 32 characters (e.g. from `openssl rand -hex 32`), or empty for off")
        return value


class SecretsSection(_Section):
    """Fernet keys that encrypt stored secrets (``app.core.secret_box``), newest first.

    Empty: one key is generated once into ``<instance>/secrets.key``. The environment
    override takes a comma-separated list (``ADMIN_MIT_SECRETS__KEYS=new,old``).
    """

    keys: list[str] = []

    @field_validator("keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("keys")
    @classmethod
    def _fernet_keys(cls, value: list[str]) -> list[str]:
        from cryptography.fernet import Fernet

        for number, key in enumerate(value, start=1):
            try:
                Fernet(key)
            except (ValueError, TypeError):
                # The key itself is never part of the message: it is a secret.
                raise ValueError(f"key {number} of {len(value)} is not a Fernet key (32 url-safe "
                                 f"base64-encoded bytes, e.g. from Fernet.generate_key())") from None
        if len(set(value)) != len(value):
            raise ValueError("the same key is listed twice")
        return value


class Settings(BaseModel):
    """Everything the process knows about its surroundings, validated once."""

    model_config = ConfigDict(extra="forbid")

    app: AppSection = AppSection()
    redis: RedisSection = RedisSection()
    celery: CelerySection = CelerySection()
    database: DatabaseSection = DatabaseSection()
    probes: ProbesSection = ProbesSection()
    retention: RetentionSection = RetentionSection()
    api: ApiSection = ApiSection()
    alerts: AlertsSection = AlertsSection()
    ansible: AnsibleSection = AnsibleSection()
    secrets: SecretsSection = SecretsSection()
    metrics: MetricsSection = MetricsSection()
    config_dir: Path = Path(DEFAULT_CONFIG_DIR)
    # Where relative paths are anchored: the working directory the settings were loaded in.
    base_dir: Path = Field(default_factory=Path.cwd)

    def _anchored(self, path: str | Path) -> Path:
        path = Path(path)
        return path if path.is_absolute() else self.base_dir / path

    @property
    def instance_dir(self) -> Path:
        return self._anchored(self.app.instance_path)

    @property
    def ansible_runs_dir(self) -> Path:
        return self._anchored(self.ansible.runs_dir) if self.ansible.runs_dir else self.instance_dir / "ansible-runs"

    @property
    def ansible_known_hosts_file(self) -> Path | None:
        return self._anchored(self.ansible.known_hosts_file) if self.ansible.known_hosts_file else None

    @property
    def ansible_projects_root(self) -> Path | None:
        return self._anchored(self.ansible.projects_root) if self.ansible.projects_root else None

    @property
    def embedded_redis_socket(self) -> Path:
        return self.instance_dir / "redis.sock"

    @property
    def _redis_auth(self) -> str:
        return f":{quote(self.redis.password, safe='')}@" if self.redis.password else ""

    @property
    def redis_url(self) -> str:
        """URL for the application's own Redis client (status cache, task registry)."""
        if self.redis.embedded:
            return f"unix://{self._redis_auth}{self.embedded_redis_socket}?db={self.redis.db}"
        return f"redis://{self._redis_auth}{self.redis.host}:{self.redis.port}/{self.redis.db}"

    @property
    def _celery_redis_url(self) -> str:
        """The Redis URL in a form both kombu (broker) and Celery's Redis result backend accept."""
        if self.redis.embedded:
            return f"redis+socket://{self._redis_auth}{self.embedded_redis_socket}?virtual_host={self.redis.db}"
        return self.redis_url

    @property
    def broker_url(self) -> str:
        return self.celery.broker_url or self._celery_redis_url

    @property
    def result_backend(self) -> str:
        return self.celery.result_backend or self._celery_redis_url

    @property
    def uses_embedded_redis(self) -> bool:
        """True when this project must run its private Redis (the status cache always uses it then)."""
        return self.redis.embedded

    @property
    def database_url(self) -> str:
        """The database URL: empty means ``admin-mit.db`` in the instance directory, and a
        relative SQLite path is anchored at the working directory."""
        url = self.database.url
        prefix = "sqlite:///"
        if not url:
            return prefix + str(self.instance_dir / DEFAULT_DATABASE_FILE)
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
            return prefix + str(self._anchored(url[len(prefix):]))
        return url


def ensure_instance_dir(settings: Settings) -> Path:
    """Create the instance directory if needed and prove it writable, or raise ``ConfigError``.

    Every process writes there (SQLite file, embedded Redis, beat state, secret key);
    checking once at start-up turns an impossible or read-only path into one line
    instead of a traceback from whichever write comes first.
    """
    path = settings.instance_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"app.instance_path: {path} exists and is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"app.instance_path: cannot create {path}: {exc.strerror}") from None
    try:
        handle, probe = tempfile.mkstemp(dir=path, prefix=".write-check-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"app.instance_path: {path} is not writable: {exc.strerror}") from None
    return path


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {section}: expected a mapping of keys")
    return data


def _is_text_field(section: str, key: str) -> bool:
    field = Settings.model_fields.get(section)
    model = field.annotation if field else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return False
    target = model.model_fields.get(key)
    return target is not None and target.annotation is str


def _env_overrides(environ: dict[str, str]) -> list[tuple[str, str, str, Any]]:
    """(variable, section, key, value) for every ``ADMIN_MIT_<SECTION>__<KEY>`` variable.

    Text settings (passwords, hosts, URLs) take the value verbatim, so ``0123``,
    ``null`` or ``a: b`` stay the string they are; others are read as YAML scalars.
    """
    found = []
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = (part.lower() for part in name[len(ENV_PREFIX):].partition("__"))
        value: Any = raw
        if not _is_text_field(section, key) and raw.strip():
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
        found.append((name, section, key, value))
    return found


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    location = ".".join(str(part) for part in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "string_type":
        message = "expected text (put the value in quotes)"
    return location, message


def load_settings(config_dir: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration, or raise ``ConfigError``."""
    environ = dict(os.environ if environ is None else environ)
    base_dir = Path.cwd()
    directory = Path(config_dir or environ.get(CONFIG_DIR_VARIABLE) or DEFAULT_CONFIG_DIR)
    if not directory.is_absolute():
        directory = base_dir / directory
    if not directory.is_dir():
        raise ConfigError(f"{directory}: configuration directory not found (run from the directory that "
                          f"holds config/, or set {CONFIG_DIR_VARIABLE})")

    merged: dict[str, dict[str, Any]] = {}
    origin: dict[tuple[str, str], str] = {}
    for filename in CONFIG_FILES:
        path = directory / filename
        for section, values in _read_yaml(path).items():
            merged.setdefault(section, {}).update(values)
            for key in values:
                origin[(section, key)] = str(path)
            origin.setdefault((section, ""), str(path))
    for variable, section, key, value in _env_overrides(environ):
        merged.setdefault(section, {})[key] = value
        origin[(section, key)] = f"environment {variable}"
        origin.setdefault((section, ""), f"environment {variable}")

    try:
        return Settings(**merged, config_dir=directory, base_dir=base_dir)
    except ValidationError as exc:
        location, message = _first_error(exc)
        section, _, rest = location.partition(".")
        key = rest.split(".")[0] or message.partition(":")[0]
        source = origin.get((section, key)) or origin.get((section, "")) or str(directory)
        raise ConfigError(f"{source}: {location}: {message}") from None
    except TypeError as exc:  # a section given as a scalar through the environment
        raise ConfigError(f"{directory}: {exc}") from None


_active: Settings | None = None


def active_settings() -> Settings:
    """The settings this process runs with: the last ``activate``d, else the files and environment."""
    global _active
    if _active is None:
        _active = load_settings()
    return _active


def activate(settings: Settings) -> None:
    global _active
    _active = settings
