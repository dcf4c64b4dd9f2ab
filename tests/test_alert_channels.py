"""The notification engine against real loopback receivers: webhook, SMTP and apprise; and the templates."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import tracemalloc
from typing import Any, Iterator

import pytest

from app.alerting.channels import CHANNEL_KINDS, ChannelConfigError, DeliveryError, Message, build_channel
from app.alerting.templates import (
    DEFAULT_TEMPLATES,
    MAX_BODY_CHARS,
    MAX_SUBJECT_CHARS,
    TemplateError,
    render,
    render_message,
    sample_context,
    validate_template,
)
from tests.receivers import SmtpReceiver, WebhookReceiver
from tests.targets import free_port

pytestmark = pytest.mark.timeout(60)

KEY = "0123456789abcdef-signing"


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


def message(event: str = "firing", notification_id: str = "ntf-42-1") -> Message:
    subject, body = render_message(None, None, sample_context(event))
    return Message(notification_id, event, subject, body, sample_context(event))


def failure(channel: Any, msg: Message | None = None, timeout: float = 5.0) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        channel.send(msg or message(), timeout=timeout)
    return caught.value


def config_error(kind: str, settings: dict[str, Any], secrets: dict[str, Any] | None = None) -> ChannelConfigError:
    with pytest.raises(ChannelConfigError) as caught:
        build_channel(kind, settings, secrets or {})
    return caught.value


def test_every_kind_is_listed_with_a_description() -> None:
    assert set(CHANNEL_KINDS) == {"webhook", "email", "apprise"}
    assert all(text and "\n" not in text for text in CHANNEL_KINDS.values())
    assert config_error("pager", {}).field == "kind"


# -- webhook


def test_webhook_delivers_signed_json_with_the_notification_id(hook: WebhookReceiver) -> None:
    channel = build_channel("webhook", {"url": f"{hook.url}/hook"}, {"signing_key": KEY})
    sent = message()
    before = int(time.time())
    channel.send(sent, timeout=5)

    [request] = hook.wait_for(1)
    assert request.method == "POST" and request.path == "/hook"
    assert request.json["id"] == "ntf-42-1" and request.json["event"] == "firing"
    assert request.json["subject"] == "[FIRING] web-1 is down"
    assert request.json["body"] == sent.body and request.json["data"]["probe"]["name"] == "web-1"
    assert before <= request.json["sent_at"] <= int(time.time())
    assert request.header("X-Admin-Mit-Notification-Id") == "ntf-42-1"
    assert request.header("User-Agent") == "admin-mit-backend"
    assert request.header("Content-Type").startswith("application/json")
    expected = hmac.new(KEY.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.header("X-Admin-Mit-Signature") == f"sha256={expected}"
    assert hook.verify(KEY)
    assert not hook.verify(KEY + "-wrong")


def test_webhook_without_a_key_is_unsigned_and_sends_extra_headers(hook: WebhookReceiver) -> None:
    channel = build_channel("webhook", {"url": f"{hook.url}/in", "headers": {"X-Team": "ops"}},
                            {"headers": {"Authorization": "Bearer s3cr3t-token"}})
    channel.send(message(), timeout=5)
    request = hook.wait_for(1)[0]
    assert request.header("X-Admin-Mit-Signature") is None
    assert request.header("X-Team") == "ops" and request.header("Authorization") == "Bearer s3cr3t-token"
    assert "s3cr3t-token" not in json.dumps(channel.describe())


def test_webhook_describe_masks_credentials_and_query() -> None:
    channel = build_channel("webhook", {"url": "https://bob:hunter22@hooks.example.com/in?token=abc123"},
                            {"signing_key": KEY})
    shown = json.dumps(channel.describe())
    assert "hooks.example.com/in" in shown
    for secret in ("bob", "hunter22", "abc123", KEY):
        assert secret not in shown


def test_webhook_retry_after_503_carries_the_same_id(hook: WebhookReceiver) -> None:
    channel = build_channel("webhook", {"url": f"{hook.url}/hook?token=abc123"}, {"signing_key": KEY})
    hook.respond_next(1, 503, "try later")
    error = failure(channel)
    assert not error.permanent
    assert "answered 503 Service Unavailable" in error.text and "try later" in error.text
    assert "abc123" not in error.text and "127.0.0.1" in error.text

    channel.send(message(), timeout=5)  # the retry
    first, second = hook.wait_for(2)
    assert first.header("X-Admin-Mit-Notification-Id") == second.header("X-Admin-Mit-Notification-Id") == "ntf-42-1"
    assert hook.verify(KEY, second)


@pytest.mark.parametrize(("status", "permanent"), [(404, True), (401, True), (410, True), (408, False),
                                                   (429, False), (500, False), (502, False)])
def test_webhook_status_decides_whether_a_retry_can_help(hook: WebhookReceiver, status: int, permanent: bool) -> None:
    channel = build_channel("webhook", {"url": f"{hook.url}/hook"}, {})
    hook.respond_next(1, status)
    error = failure(channel)
    assert error.permanent is permanent
    assert f"answered {status} " in error.text


def test_webhook_redirect_is_not_followed(hook: WebhookReceiver) -> None:
    channel = build_channel("webhook", {"url": f"{hook.url}/old"}, {})
    hook.respond_next(1, 301)
    error = failure(channel)
    assert error.permanent and "not followed" in error.text
    assert len(hook.requests) == 1


def test_webhook_that_hangs_is_a_temporary_error_after_the_timeout(hook: WebhookReceiver) -> None:
    channel = build_channel("webhook", {"url": f"{hook.url}/hook"}, {})
    hook.hang_next(1)
    started = time.monotonic()
    error = failure(channel, timeout=1.0)
    assert not error.permanent and "did not answer within 1 s" in error.text
    assert time.monotonic() - started < 20  # the receiver would hold it until the test ends


@pytest.mark.parametrize("status", [200, 500])
def test_webhook_endless_response_body_is_not_read(hook: WebhookReceiver, status: int) -> None:
    channel = build_channel("webhook", {"url": f"{hook.url}/hook"}, {})
    hook.endless_next(1, status)
    tracemalloc.start()
    try:
        if status == 200:
            channel.send(message(), timeout=5)
        else:
            error = failure(channel)
            assert not error.permanent and "answered 500" in error.text and len(error.text) < 600
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"{peak} bytes allocated while sending"


def test_webhook_connection_refused_is_temporary() -> None:
    channel = build_channel("webhook", {"url": f"http://127.0.0.1:{free_port()}/hook"}, {})
    error = failure(channel)
    assert not error.permanent and "could not connect" in error.text and "refused" in error.text


@pytest.mark.parametrize(("settings", "secrets", "field", "words"), [
    ({"url": "ftp://127.0.0.1/x"}, {}, "settings.url", "http"),
    ({"url": "http://127.0.0.1/x", "retries": 3}, {}, "settings.retries", "unknown field"),
    ({}, {}, "settings.url", "required"),
    ({"url": "http://127.0.0.1/x", "headers": {"X-Admin-Mit-Signature": "forged"}}, {}, "settings.headers",
     "set by the channel"),
    ({"url": "http://127.0.0.1/x"}, {"signing_key": "short"}, "secrets.signing_key", "16"),
    ({"url": "http://127.0.0.1/x"}, {"token": "x"}, "secrets.token", "unknown field"),
])
def test_webhook_config_errors_name_the_field(settings: dict[str, Any], secrets: dict[str, Any], field: str,
                                              words: str) -> None:
    error = config_error("webhook", settings, secrets)
    assert error.field == field
    assert str(error).startswith(field) and words in str(error)
    assert "pydantic" not in str(error) and "{" not in str(error)


# -- email


def email_settings(smtp: SmtpReceiver, **extra: Any) -> dict[str, Any]:
    return {"host": smtp.host, "port": smtp.port, "security": "none", "from_address": "Alerts <alerts@example.com>",
            "to_addresses": ["ops@example.com", "oncall@example.com"], **extra}


def test_email_is_delivered_with_subject_body_and_id(smtp: SmtpReceiver) -> None:
    channel = build_channel("email", email_settings(smtp), {})
    sent = message()
    channel.send(sent, timeout=5)

    [mail] = smtp.wait_for(1)
    assert mail.mail_from == "alerts@example.com"
    assert mail.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    assert mail.subject == "[FIRING] web-1 is down"
    assert "web-1 is down." in mail.text and "https://web-1.example.com/health" in mail.text
    assert mail.message["X-Admin-Mit-Notification-Id"] == "ntf-42-1"
    assert "ntf-42-1" in mail.message["Message-ID"]
    assert mail.message["From"] == "Alerts <alerts@example.com>"


def test_email_retry_keeps_the_message_id(smtp: SmtpReceiver) -> None:
    channel = build_channel("email", email_settings(smtp), {})
    channel.send(message(), timeout=5)
    channel.send(message(), timeout=5)
    first, second = smtp.wait_for(2)
    assert first.message["Message-ID"] == second.message["Message-ID"]


def test_email_refused_recipient_is_a_clear_permanent_error(smtp: SmtpReceiver) -> None:
    smtp.refuse_recipients.update({"ops@example.com", "oncall@example.com"})
    error = failure(build_channel("email", email_settings(smtp), {}))
    assert error.permanent
    assert f"SMTP server 127.0.0.1:{smtp.port} refused every recipient" in error.text
    assert "ops@example.com (550 5.1.1" in error.text and "User unknown" in error.text
    assert "b'" not in error.text and "{" not in error.text
    assert smtp.messages == []


def test_email_partly_refused_is_reported_and_not_retried(smtp: SmtpReceiver) -> None:
    smtp.refuse_recipients.add("oncall@example.com")
    error = failure(build_channel("email", email_settings(smtp), {}))
    assert error.permanent
    assert "delivered to ops@example.com but refused oncall@example.com (550" in error.text
    assert smtp.wait_for(1)[0].rcpt_tos == ["ops@example.com"]


def test_email_refused_sender(smtp: SmtpReceiver) -> None:
    smtp.refuse_senders.add("alerts@example.com")
    error = failure(build_channel("email", email_settings(smtp), {}))
    assert error.permanent
    assert f"SMTP server 127.0.0.1:{smtp.port} refused the sender alerts@example.com: 553" in error.text


def test_email_logs_in_and_a_wrong_password_is_refused() -> None:
    with SmtpReceiver(credentials=("alerts", "pa55word")) as smtp:
        build_channel("email", email_settings(smtp), {"username": "alerts", "password": "pa55word"}).send(message())
        assert smtp.wait_for(1)[0].login == "alerts"

        error = failure(build_channel("email", email_settings(smtp), {"username": "alerts", "password": "nope"}))
        assert error.permanent and "refused the login of alerts: 535" in error.text
        assert "nope" not in error.text


def test_email_starttls_not_offered_is_explained(smtp: SmtpReceiver) -> None:
    error = failure(build_channel("email", email_settings(smtp, security="starttls"), {}))
    assert error.permanent and "does not offer STARTTLS" in error.text
    assert smtp.messages == []


def test_email_server_down_is_temporary() -> None:
    settings = {"host": "127.0.0.1", "port": free_port(), "security": "none", "from_address": "a@example.com",
                "to_addresses": ["b@example.com"]}
    error = failure(build_channel("email", settings, {}))
    assert not error.permanent and "could not connect to SMTP server 127.0.0.1:" in error.text


@pytest.mark.parametrize(("settings", "secrets", "field"), [
    ({"host": "smtp.example.com", "security": "none", "from_address": "a@example.com",
      "to_addresses": ["b@example.com"]}, {"username": "u", "password": "p"}, "settings.security"),
    ({"host": "smtp.example.com", "from_address": "a@example.com", "to_addresses": ["b@example.com"]},
     {"username": "u"}, "secrets"),
    ({"host": "smtp.example.com", "from_address": "a@example.com", "to_addresses": ["b@example.com", "not-an-address"]},
     {}, "settings.to_addresses"),
    ({"host": "smtp.example.com", "from_address": "a@example.com", "to_addresses": []}, {}, "settings.to_addresses"),
    ({"host": "smtp.example.com", "from_address": "a@example.com", "to_addresses": ["b@example.com"],
      "security": "ssl"}, {}, "settings.security"),
])
def test_email_config_errors(settings: dict[str, Any], secrets: dict[str, Any], field: str) -> None:
    error = config_error("email", settings, secrets)
    assert error.field == field and str(error).startswith(field)


def test_email_describe_hides_the_password(smtp: SmtpReceiver) -> None:
    channel = build_channel("email", email_settings(smtp), {"username": "alerts", "password": "pa55word"})
    shown = channel.describe()
    assert shown["port"] == smtp.port and shown["to_addresses"] == ["ops@example.com", "oncall@example.com"]
    assert "pa55word" not in json.dumps(shown)


# -- apprise


def test_apprise_unknown_scheme_is_refused_without_echoing_the_token() -> None:
    error = config_error("apprise", {}, {"urls": ["json://127.0.0.1/", "nosuch://Tok3nSecretValue@host/x"]})
    assert error.field == "secrets.urls[1]"
    assert "nosuch://" in str(error) and "Tok3nSecretValue" not in str(error)


def test_apprise_invalid_url_of_a_known_service_is_refused_without_its_token() -> None:
    error = config_error("apprise", {}, {"urls": ["slack://T1234ABCD/Bsecretpart/"]})
    assert error.field == "secrets.urls[0]" and "slack://" in str(error)
    assert "Bsecretpart" not in str(error) and "T1234ABCD" not in str(error)


def test_apprise_json_url_is_delivered(hook: WebhookReceiver) -> None:
    channel = build_channel("apprise", {}, {"urls": [f"json://user:pa55phrase@127.0.0.1:{hook.port}/apprise"]})
    assert "pa55phrase" not in json.dumps(channel.describe())
    sent = message()
    channel.send(sent, timeout=5)
    request = hook.wait_for(1)[0]
    assert request.path == "/apprise"
    assert request.json["title"] == "[FIRING] web-1 is down"
    assert request.json["message"] == sent.body
    assert request.json["type"] == "failure"


def test_apprise_failure_is_temporary_with_apprise_reason(hook: WebhookReceiver) -> None:
    url = f"json://user:pa55phrase@127.0.0.1:{hook.port}/apprise?token=qu3rysecret"
    channel = build_channel("apprise", {}, {"urls": [url]})
    hook.respond_next(1, 503)
    error = failure(channel)
    assert not error.permanent
    assert "503" in error.text and "JSON" in error.text
    assert "pa55phrase" not in error.text and "qu3rysecret" not in error.text


def test_apprise_reports_which_url_failed(hook: WebhookReceiver) -> None:
    good = f"json://127.0.0.1:{hook.port}/ok"
    down = f"json://127.0.0.1:{free_port()}/down"
    error = failure(build_channel("apprise", {}, {"urls": [good, down]}))
    assert not error.permanent and "1 of 2 URLs" in error.text and "URL 2 of 2" in error.text
    assert len(hook.wait_for(1)) == 1


# -- templates


@pytest.mark.parametrize("event", list(DEFAULT_TEMPLATES))
def test_default_templates_render_every_event(event: str) -> None:
    subject_template, body_template = DEFAULT_TEMPLATES[event]
    validate_template(subject_template)
    validate_template(body_template)
    subject, body = render_message(None, None, sample_context(event))
    # A group's subject counts what it carries: the sample has one firing alert.
    assert subject.startswith("[FIRING:1]" if event == "group" else f"[{event.upper()}]") and "\n" not in subject
    assert body and "template failed" not in body
    if event != "test":
        assert "web-1" in subject + body


def test_default_firing_message_says_what_a_person_needs() -> None:
    subject, body = render_message(None, None, sample_context("firing"))
    assert subject == "[FIRING] web-1 is down"
    for part in ("web-1", "https://web-1.example.com/health", "failed (503)", "connection refused", "1234 ms",
                 "2026-01-01 08:00:00 UTC (for 12 min)", "https://console.example.com/alerts/42"):
        assert part in body


def test_default_resolved_message() -> None:
    subject, body = render_message(None, None, sample_context("resolved"))
    assert subject == "[RESOLVED] web-1 is up again"
    assert "after 12 min" in body


def test_times_follow_the_context_timezone() -> None:
    context = {**sample_context("firing"), "timezone": "Asia/Shanghai"}
    assert "2026-01-01 16:00:00 (Asia/Shanghai)" in render("{{ since | datetime }}", context)


def test_defaults_survive_a_context_with_gaps() -> None:
    subject, body = render_message(None, None, {"event": "firing", "probe": {"name": "web-1"}, "status": "timeout"})
    assert subject == "[FIRING] web-1 is down"
    assert "None" not in body and "template failed" not in body


def refused(text: str) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        validate_template(text)
    return caught.value


def test_syntax_error_is_refused_with_its_line() -> None:
    error = refused("Probe {{ probe.name }}\nis {{ status }\ndown")
    assert error.line == 2 and str(error).startswith("line 2: unexpected '}'")
    assert refused("{% if status %}down").line == 1


def test_unknown_variable_and_field_are_refused() -> None:
    error = refused("{{ probe.name }}\n{{ probe.nmae }}")
    assert error.line == 2 and "probe has no field 'nmae'" in str(error) and "name" in str(error)
    assert "unknown variable 'prob'" in str(refused("{{ prob.name }}"))
    # also in a branch the sample context would not take, and inside loops
    assert "'bogus'" in str(refused("{% if status == 'nothing-like-this' %}{{ rule.bogus }}{% endif %}"))
    assert "'nmae'" in str(refused("{% for a in alerts %}{{ a.probe.nmae }}{% endfor %}"))
    assert "No filter named 'nofilter'" in str(refused("{{ since | nofilter }}"))


def test_sandbox_escape_is_refused_or_harmless() -> None:
    escape = "{{ ''.__class__.__mro__ }}{{ probe.__class__.__init__.__globals__ }}"
    assert "not available" in str(refused(escape))
    rendered = render(escape, sample_context())
    assert "class" not in rendered and "object" not in rendered and "globals" not in rendered
    assert "not available" in str(refused("{{ 'x'.format.__globals__ }}{{ 'x'.center(10) }}"))
    assert "not available" in str(refused("{% macro m() %}{% endmacro %}"))


def test_huge_output_is_capped() -> None:
    template = "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}"
    validate_template(template)
    body = render(template, sample_context())
    assert len(body) <= MAX_BODY_CHARS and body.endswith(f"(cut at {MAX_BODY_CHARS} characters)")
    subject = render("{% for i in range(1000) %}very long subject {% endfor %}", sample_context(), part="subject")
    assert len(subject) <= MAX_SUBJECT_CHARS and "\n" not in subject


@pytest.mark.parametrize("template", [
    "{{ 'x' * 100000000 }}",
    "{% set a = 'x' * 50000 %}{{ [a, a, a, a] | join }}",
    "{% set big %}{% for i in range(10000) %}{{ 'y' * 1000 }}{% endfor %}{% endset %}{{ big | length }}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{{ 2 ** 100000000 }}",
    "{{ '%999999999d' % 1 }}",
])
def test_templates_that_would_exhaust_a_worker_are_refused(template: str) -> None:
    assert "not allowed" in str(refused(template))
    body = render(template, sample_context())  # if saved anyway: the default, and a note
    assert body.startswith("web-1 is down.") and "default template was used" in body


def test_runtime_error_falls_back_to_the_default_and_says_so() -> None:
    body = render("Down: {{ probe.name }} {{ 1 / 0 }}", sample_context())
    assert body.startswith("web-1 is down.")
    assert "template failed (line 1: division by zero)" in body
    subject = render("{{ 1 / 0 }}", sample_context(), part="subject")
    assert subject == "[FIRING] web-1 is down [template error]"


def test_everyday_jinja_works() -> None:
    template = ("{% for a in alerts %}{{ loop.index }}{{ loop.cycle('a', 'b') }} {{ a.probe.name | upper }}; "
                "{% endfor %}{{ alerts | map(attribute='probe.name') | join(', ') }} "
                "{{ '%.1f' | format(response_time_ms) }} {{ error.split(' ')[0] }} {{ probe.get('name') }}")
    validate_template(template)
    assert render(template, sample_context()) == "1a WEB-1; 2b DB-1; web-1, db-1 1234.5 connection web-1"


def test_undefined_names_render_empty_when_sent() -> None:
    assert render("[{{ nothing.at.all }}][{{ probe.nmae }}][{{ alert.note }}]", sample_context()) == \
        "[][][looking into it]"


def test_a_tenant_template_reaches_the_receiver(hook: WebhookReceiver) -> None:
    template = "{{ probe.name | upper }} {{ status }} after {{ duration_seconds | duration }}"
    validate_template(template)
    context = sample_context("firing")
    sent = Message("ntf-7", "firing", render("{{ probe.name }} down", context, part="subject"),
                   render(template, context), context)
    build_channel("webhook", {"url": hook.url}, {}).send(sent)
    assert hook.wait_for(1)[0].json["body"] == "WEB-1 failed after 12 min"


def test_message_refuses_an_unknown_event() -> None:
    with pytest.raises(ValueError, match="unknown event"):
        Message("id", "exploded", "s", "b", {})
