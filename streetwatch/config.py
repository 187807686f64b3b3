"""Configuration: `config.yaml`, then `STREETWATCH_<SECTION>__<KEY>` environment overrides.

Validated once at start. An unknown or invalid key stops the start with a message naming it, because a
typo such as `influxdb.bucekt` silently falling back to a default would lose data in production.
Each package that needs settings owns its section model (rules/, alerts/); this module assembles them.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alerts.config import AlertsConfig
from devices.location import LocationConfig
from figures.config import FiguresConfig, ReportsConfig
from notify.config import NotifyConfig
from rules.config import RulesConfig
from streetwatch.errors import ConfigError

ENV_PREFIX = "STREETWATCH_"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TlsConfig(Section):
    enabled: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context for the broker (ingest and alert publisher alike); None if off."""
        if not self.enabled:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


class MqttConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    client_id: str = "streetwatch-ingest"
    topic_prefix: str = Field("city/jining", min_length=1)
    max_payload_bytes: int = Field(256 * 1024, ge=64)
    keepalive_s: int = Field(30, ge=5)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    receive_maximum: int = Field(2000, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    max_inflight_bytes: int = Field(32 * 1024**2, ge=1024 * 1024)
    tls: TlsConfig = TlsConfig()

    @model_validator(mode="after")
    def _prefix_levels(self) -> MqttConfig:
        if any(ch in self.topic_prefix for ch in "+#") or "" in self.topic_prefix.strip("/").split(
            "/"
        ):
            raise ValueError(
                "topic_prefix must be plain topic levels (no wildcards, no empty level)"
            )
        return self


class StorageConfig(Section):
    backend: Literal["influxdb", "sqlite"] = "influxdb"
    data_dir: str = "./data"
    spool_max_bytes: int = Field(1024**3, ge=1024 * 1024)
    spool_segment_bytes: int = Field(16 * 1024**2, ge=64 * 1024)
    fsync_interval_ms: float = Field(10.0, ge=0)
    batch_lines: int = Field(5000, ge=1, le=100_000)
    batch_interval_s: float = Field(1.0, gt=0)
    retry_min_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(60.0, gt=0)
    retry_after_max_s: float = Field(60.0, gt=0)
    stuck_after_s: float = Field(600.0, gt=0)


class InfluxConfig(Section):
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "streetwatch"
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = None
    org: str | None = None
    bucket: str = "streetwatch"
    token: str | None = None
    timeout_s: float = Field(30.0, gt=0)
    gzip: bool = True
    create_database: bool = True


class RegistryConfig(Section):
    path: str | None = None


class HttpConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    token: str | None = None
    # Named credentials, {name: token}: the name is the audit trail's `who`.
    tokens: dict[str, str] = {}
    # true: every GET but /healthz needs a token too (header, or ?access_token= for the page/SSE).
    read_token_required: bool = False
    # Host header names the service answers to (DNS rebinding); None: loopback names while
    # http.host is a loopback address, any name otherwise. "*" allows any.
    allowed_hosts: list[str] | None = None

    @model_validator(mode="after")
    def _distinct_tokens(self) -> HttpConfig:
        seen: dict[str, str] = {}
        for name, token in self.tokens.items():
            if not name.strip() or len(name) > 128:
                raise ValueError("tokens: a name must be 1–128 characters")
            if not token:
                raise ValueError(f"tokens.{name}: empty token")
            if token in seen:
                raise ValueError(f"tokens.{name}: same token as tokens.{seen[token]}")
            seen[token] = name
        return self


class DeadLetterConfig(Section):
    max_bytes: int = Field(50 * 1024**2, ge=4096)
    backups: int = Field(5, ge=0)
    max_payload_chars: int = Field(8192, ge=64)
    max_per_minute: int = Field(6000, ge=1)
    per_topic_per_minute: int = Field(60, ge=1)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration_s(value: Any) -> Any:
    """A duration: seconds as a number, or text such as `30d`, `12h`, `90m`, `45s`."""
    if isinstance(value, str):
        text = value.strip().lower()
        unit = _DURATION_UNITS.get(text[-1:]) if text else None
        number = text[:-1] if unit else text
        try:
            return float(number) * (unit or 1)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a duration (seconds, or a number with s, m, h, d or w)"
            ) from None
    return value


class IngestConfig(Section):
    # Oldest reading `ts` accepted; older ones are dead-lettered as ts_too_old.
    max_age: Annotated[float, BeforeValidator(_duration_s), Field(gt=0)] = 30 * 86400.0
    # New (unregistered) device ids per minute above which /healthz and metrics warn.
    new_devices_warn_per_minute: int = Field(1000, ge=1)


class LogConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(BaseSettings):
    """The whole configuration. Sources, strongest first: init args, environment, YAML file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    mqtt: MqttConfig = MqttConfig()
    storage: StorageConfig = StorageConfig()
    influxdb: InfluxConfig = InfluxConfig()
    registry: RegistryConfig = RegistryConfig()
    http: HttpConfig = HttpConfig()
    deadletter: DeadLetterConfig = DeadLetterConfig()
    ingest: IngestConfig = IngestConfig()
    location: LocationConfig = LocationConfig()
    rules: RulesConfig = RulesConfig()
    alerts: AlertsConfig = AlertsConfig()
    notify: NotifyConfig = NotifyConfig()
    log: LogConfig = LogConfig()
    figures: FiguresConfig = FiguresConfig()
    reports: ReportsConfig = ReportsConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init_settings carries the YAML file's content (see load_settings); env overrides it.
        return (env_settings, init_settings)

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_env_keys(env: dict[str, str]) -> None:
    """pydantic-settings ignores env vars that match no field; a mistyped one must fail instead."""
    for name in env:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        path = upper[len(ENV_PREFIX) :].lower().split("__")
        model: Any = Settings
        for i, part in enumerate(path):
            fields = getattr(model, "model_fields", None)
            if fields is None or part not in fields:
                dotted = ".".join(path[: i + 1])
                raise ConfigError(
                    f"unknown config key {dotted!r} (from environment variable {name})"
                )
            annotation = fields[part].annotation
            model = annotation if isinstance(annotation, type) else None
            if model is None or not issubclass(model, BaseModel):
                if i != len(path) - 1:
                    raise ConfigError(
                        f"config key {'.'.join(path[: i + 1])!r} has no sub-keys ({name})"
                    )
                break


def _secret(key: str, given: Any) -> bool:
    return isinstance(given, dict) or any(w in key for w in ("token", "password", "secret"))


def _format_error(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown config key {key!r}")
        elif _secret(key, err.get("input")):
            # Never echo a credential (or a whole section that holds one) into a log line.
            lines.append(f"invalid config key {key!r}: {err['msg']}")
        else:
            lines.append(f"invalid config key {key!r}: {err['msg']} (got {err.get('input')!r})")
    return f"{origin}: " + "; ".join(lines)


def load_settings(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Read YAML (if any), apply overrides and the environment, validate. Raises ConfigError."""
    data: dict[str, Any] = {}
    origin = "config"
    if path is not None:
        file = Path(path)
        origin = str(file)
        if not file.exists():
            raise ConfigError(f"config file {file} does not exist")
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: top level must be a mapping of sections")
        data = loaded
    if overrides:
        data = _deep_merge(data, overrides)
    environ = dict(os.environ if env is None else env)
    _check_env_keys(environ)
    saved = None
    if env is not None:
        saved = {k: v for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)}
        for key in saved:
            del os.environ[key]
        os.environ.update({k: v for k, v in env.items() if k.upper().startswith(ENV_PREFIX)})
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, origin)) from exc
    finally:
        if saved is not None:
            for key in [k for k in os.environ if k.upper().startswith(ENV_PREFIX)]:
                del os.environ[key]
            os.environ.update(saved)


SECRET_KEYS = ("token", "tokens", "password", "link_secret", "secret")
# Apprise URLs carry the webhook's key or the mailbox password in them: print only the scheme.
URL_LIST_KEYS = ("urls", "fallback", "escalate_to", "send_to")


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every credential replaced by "***" (for printing): a
    token or password must never end up in a terminal log or a support ticket."""

    def scrub(value: Any, key: str = "") -> Any:
        if key in SECRET_KEYS and value not in (None, "", {}):
            if isinstance(value, dict):
                return dict.fromkeys(value, "***")
            return "***"
        if key in URL_LIST_KEYS and isinstance(value, list):
            return [f"{str(v).split('://', 1)[0]}://***" for v in value]
        if isinstance(value, dict):
            return {k: scrub(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    result: dict[str, Any] = scrub(settings.model_dump(mode="json"))
    return result
