"""Customers and staff: one user model, e-mail as the login."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from bankcore.crypto import EncryptedTextField
from bankcore.ids import uuid7


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **fields: Any) -> User:
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **fields)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=username)


class User(AbstractBaseUser, PermissionsMixin):  # type: ignore[django-manager-missing]
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    email = models.EmailField(max_length=254, unique=True)
    phone = models.CharField(max_length=20, blank=True, help_text="E.164, e.g. +4915112345678")
    full_name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    email_verified = models.BooleanField(default=False)
    phone_verified = models.BooleanField(default=False)
    # Lockout lives in the database so a cache flush cannot reset it.
    failed_auth_attempts = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    lock_count = models.PositiveIntegerField(default=0, help_text="How many times the account was locked.")
    # Sensitive personal data: encrypted at rest (bankcore.crypto), never searchable.
    national_id = EncryptedTextField(blank=True, default="", help_text="National id number, stored encrypted.")
    # Where security alerts and statements go, when not the login e-mail / phone.
    notification_email = models.EmailField(max_length=254, blank=True)
    notification_phone = models.CharField(max_length=20, blank=True, help_text="E.164; empty means `phone`.")

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["full_name"]

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_unique_ci")]
        # What staff may do to a customer from the admin (the staff groups: accounts/services/staff_groups.py).
        permissions = [
            ("lock_user", "Can lock and unlock a user's sign-in"),
            ("revoke_devices", "Can revoke a user's devices and end their sessions"),
            ("reset_two_factor", "Can propose a two-factor reset (maker)"),
            ("approve_two_factor_reset", "Can approve or reject a two-factor reset (checker)"),
        ]

    def __str__(self) -> str:
        return self.email

    def is_locked(self, now: Any = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or timezone.now())

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)
