"""Password hashing (Argon2id) and the password policy."""

import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from gefapi.errors import ValidationError

MIN_LENGTH = 10
_DUMMY_HASH: dict[int, str] = {}


def _hasher() -> PasswordHasher:
    memory = current_app.config.get("PASSWORD_HASH_MEMORY_KIB", 19456)
    return PasswordHasher(time_cost=2, memory_cost=memory, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not there is a hash, so timing does not reveal accounts."""
    hasher = _hasher()
    if password_hash is None:
        dummy = _DUMMY_HASH.setdefault(hasher.memory_cost, hasher.hash("not-a-password"))
        password_hash, password = dummy, password + "-never-matches"
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)


def check_policy(password: str, *, email: str | None = None, field: str = "password") -> None:
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"Must be at least {MIN_LENGTH} characters long.")
    if len(set(password)) < 4:
        problems.append("Must use at least 4 different characters.")
    if email and password.lower() == email.lower():
        problems.append("Must not be your email address.")
    if problems:
        raise ValidationError("Password too weak", errors={field: problems})


def generate_password(length: int = 16) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))
