"""Password hashing with Argon2id: slow and memory-hard by design, at the cost set by
``api.password_hash_time_cost`` and ``api.password_hash_memory_kib``. A stored hash made
with other costs still verifies, and is re-hashed at the next successful login."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.core.config import active_settings
from app.services.errors import InvalidInputError

# Fixed rather than configurable, so the API's published schema states the real rule.
PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 1024


@lru_cache(maxsize=4)
def _hasher_for(time_cost: int, memory_kib: int) -> tuple[PasswordHasher, str]:
    """The hasher, and a hash to verify against when the username is unknown, so a wrong
    username costs as long as a wrong password."""
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
    return hasher, hasher.hash("not a password of anyone")


def _hasher() -> tuple[PasswordHasher, str]:
    settings = active_settings().api
    return _hasher_for(settings.password_hash_time_cost, settings.password_hash_memory_kib)


def check_strength(password: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise InvalidInputError(f"must be at least {PASSWORD_MIN_LENGTH} characters", field="password")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise InvalidInputError(f"must be at most {PASSWORD_MAX_LENGTH} characters", field="password")


def hash_password(password: str) -> str:
    check_strength(password)
    return _hasher()[0].hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    hasher, dummy = _hasher()
    try:
        return hasher.verify(stored_hash or dummy, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher()[0].check_needs_rehash(stored_hash)
