"""The webhook certificate policy (rolecall/certs.py) on a fake clock: what it makes, when it renews, and that
the apiserver can verify the served certificate at every moment of years of rotations."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from rolecall import certs

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
NAMES = ["rolecall-operator-webhook.rolecall-system.svc", "127.0.0.1"]
LIFE = certs.Lifetimes(ca=dt.timedelta(days=300), serving=dt.timedelta(days=30), settle=dt.timedelta(hours=1))


def _verifies(material: certs.Material, trusted_bundle: bytes, now: dt.datetime) -> bool:
    """What the apiserver checks: the leaf is valid now and directly issued by a trusted, valid CA."""
    leaf = certs.certificates(material.tls_crt)[0]
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        return False
    for ca in certs.certificates(trusted_bundle):
        if ca.subject == leaf.issuer and ca.not_valid_before_utc <= now < ca.not_valid_after_utc:
            try:
                leaf.verify_directly_issued_by(ca)
                return True
            except (ValueError, TypeError, x509.InvalidSignature):
                continue
    return False


def _sans(material: certs.Material) -> list[str]:
    leaf = certs.certificates(material.tls_crt)[0]
    alt = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in alt]


def test_an_empty_secret_gets_a_ca_and_a_serving_certificate_for_the_names() -> None:
    made = certs.plan(None, NAMES, T0, LIFE, None)
    assert made.changes == ["made a CA and a serving certificate"]
    assert _verifies(made.material, made.material.ca_bundle, T0)
    assert _sans(made.material) == NAMES
    assert certs.not_after(made.material.tls_crt) == T0 + LIFE.serving


def test_nothing_changes_while_both_have_more_than_a_third_left() -> None:
    made = certs.plan(None, NAMES, T0, LIFE, None).material
    later = certs.plan(made, NAMES, T0 + dt.timedelta(days=19), LIFE, dt.timedelta(days=19))
    assert later.changes == [] and later.material is made


def test_the_serving_certificate_is_renewed_by_the_same_ca_with_a_third_left() -> None:
    made = certs.plan(None, NAMES, T0, LIFE, None).material
    now = T0 + dt.timedelta(days=21)
    renewed = certs.plan(made, NAMES, now, LIFE, dt.timedelta(days=21))
    assert renewed.changes == ["renewed the serving certificate"]
    assert renewed.material.ca_bundle == made.ca_bundle and renewed.material.tls_crt != made.tls_crt
    assert _verifies(renewed.material, made.ca_bundle, now)


def test_a_renewed_ca_is_trusted_first_and_used_only_once_published() -> None:
    first = certs.plan(None, NAMES, T0, LIFE, None).material
    made = certs.plan(first, NAMES, T0 + dt.timedelta(days=195), LIFE, dt.timedelta(days=195)).material
    now = T0 + dt.timedelta(days=201)
    step = certs.plan(made, NAMES, now, LIFE, dt.timedelta(days=201))
    assert step.changes == ["renewed the CA (the old one stays in the bundle until it expires)"]
    bundle = certs.certificates(step.material.ca_bundle)
    assert len(bundle) == 2 and bundle[1].subject == certs.certificates(made.ca_bundle)[0].subject
    # The serving certificate is still the old CA's (not due itself), and the new bundle trusts it.
    assert step.material.tls_crt == made.tls_crt
    assert _verifies(step.material, step.material.ca_bundle, now)
    leaf_issuer = certs.certificates(step.material.tls_crt)[0].issuer
    # Not yet in the webhook configuration: it stays on the old CA.
    held = certs.plan(step.material, NAMES, now + dt.timedelta(minutes=5), LIFE, None)
    assert certs.certificates(held.material.tls_crt)[0].issuer == leaf_issuer
    # Published for longer than the settle time: it moves to the new CA.
    moved = certs.plan(step.material, NAMES, now + dt.timedelta(hours=2), LIFE, dt.timedelta(hours=2))
    assert moved.changes == ["renewed the serving certificate"]
    assert certs.certificates(moved.material.tls_crt)[0].issuer == bundle[0].subject


def test_expired_cas_leave_the_bundle() -> None:
    made = certs.plan(None, NAMES, T0, LIFE, None).material
    rotated = certs.plan(made, NAMES, T0 + dt.timedelta(days=201), LIFE, None).material
    now = T0 + dt.timedelta(days=301)
    after = certs.plan(rotated, NAMES, now, LIFE, dt.timedelta(days=100))
    assert "dropped 1 expired CA(s) from the bundle" in after.changes
    assert len(certs.certificates(after.material.ca_bundle)) == 1
    assert _verifies(after.material, after.material.ca_bundle, now)


def test_changed_names_get_a_new_serving_certificate() -> None:
    made = certs.plan(None, NAMES, T0, LIFE, None).material
    renamed = certs.plan(made, [*NAMES, "rolecall.example"], T0 + dt.timedelta(days=1), LIFE, None)
    assert renamed.changes == ["renewed the serving certificate"]
    assert "rolecall.example" in _sans(renamed.material)


def test_certificates_from_elsewhere_are_never_rewritten() -> None:
    made = certs.plan(None, NAMES, T0, LIFE, None).material
    external = certs.Material(made.ca_bundle, b"", made.tls_crt, made.tls_key)
    assert certs.plan(external, NAMES, T0 + dt.timedelta(days=400), LIFE, None).changes == []


def test_years_of_rotations_never_serve_what_the_published_bundle_cannot_verify() -> None:
    """The keeper's passes (rolecall/webhook.py), every 6 hours for 3 CA lifetimes: a pass that changes the
    Secret writes it and stops; a later pass puts its bundle into the webhook configuration; the pass after
    that marks when it was published. Replicas and the apiserver pick up each change at any moment, in either
    order, so at each change both the old certificate against the new bundle and the new certificate
    against the old bundle must verify."""
    step = dt.timedelta(hours=6)
    now = T0
    secret = certs.plan(None, NAMES, now, LIFE, None).material
    apiserver_bundle = secret.ca_bundle
    marked: tuple[bytes, dt.datetime] | None = None
    renewals = 0
    while now < T0 + 3 * LIFE.ca:
        now += step
        published_for = now - marked[1] if marked and marked[0] == secret.ca_bundle else None
        plan = certs.plan(secret, NAMES, now, LIFE, published_for)
        if plan.changes:
            renewals += 1
            assert _verifies(plan.material, apiserver_bundle, now), f"new certificate, old bundle: {now}"
            assert _verifies(secret, apiserver_bundle, now), f"old certificate expired unrenewed: {now}"
            secret = plan.material
        elif apiserver_bundle != secret.ca_bundle:
            assert _verifies(secret, secret.ca_bundle, now), f"old certificate, new bundle: {now}"
            apiserver_bundle = secret.ca_bundle
        elif published_for is None:
            marked = (secret.ca_bundle, now)
    assert renewals >= 3 * 300 // 20  # the serving certificate about every 20 days, the CA every 200
