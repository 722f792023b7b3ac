"""The S3 setup of the stack: the recordings bucket, locked, and the mixer's own narrow account.

The root account of the S3 server creates the bucket with object lock and a default retention
(so every object version, recordings and manifests alike, is WORM from the moment it is written),
then creates an ordinary user for the mixer and grants it, by bucket policy, only what archiving
needs: read and write objects, read the lock and versioning configuration. The mixer can neither
delete a version, shorten a retention, bypass GOVERNANCE, change the lock or the policy, nor
create or delete buckets; those stay with root. The processes that only read recordings (the
REST server, the exporter's manifest check) get a second account that may read and list and
nothing else, so a compromised web process can neither write nor delete a recording; the
recorder and call state get no S3 credentials at all.

versitygw (v1.8.0) has its own IAM (``--iam-dir``: accounts in a JSON file, managed through its
admin API, ``PATCH /create-user`` signed with SigV4 by root) and evaluates AWS-style bucket
policies. What it does not have: AWS IAM users, groups and identity policies through the AWS IAM
API (``iam:CreateUser``), access keys per user with rotation, or per-prefix conditions beyond the
resource ARN; an account has one of three roles (``user``, ``userplus``, ``admin``). ``user`` owns
nothing and may act only where a bucket policy (or ACL) lets it, which is what the mixer gets.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from minio import Minio
from minio.commonconfig import COMPLIANCE, ENABLED, GOVERNANCE
from minio.credentials.credentials import Credentials
from minio.error import S3Error
from minio.objectlockconfig import DAYS, ObjectLockConfig
from minio.signer import sign_v4_s3

from callrec.infra.errors import StartFailed

MIXER_ACTIONS = (
    "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:ListBucket",
    "s3:ListBucketVersions", "s3:GetBucketObjectLockConfiguration", "s3:GetBucketVersioning",
    "s3:GetObjectRetention", "s3:PutObjectRetention", "s3:GetBucketLocation",
)
"""What the mixer may do in its bucket. ``PutObjectRetention`` sets a retention on a new version
(extending, never shortening: shortening COMPLIANCE is refused to everyone, and shortening
GOVERNANCE needs ``BypassGovernanceRetention``, which it does not get)."""


READER_ACTIONS = (
    "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions",
    "s3:GetBucketLocation",
)
"""What the REST server and the exporter may do: read recordings and manifests (by version),
list them. No write, retention or configuration action."""


@dataclass(frozen=True)
class S3Account:
    access_key: str
    secret_key: str


def account_file(path: Path, prefix: str) -> S3Account:
    """Credentials made once and kept in ``path`` (mode 0600), out of argv and out of git."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"access_key": f"{prefix}-" + secrets.token_hex(6),
                                    "secret_key": secrets.token_urlsafe(24)}))
        path.chmod(0o600)
    stored = json.loads(path.read_text())
    return S3Account(stored["access_key"], stored["secret_key"])


def create_user(endpoint: str, root: S3Account, user: S3Account, role: str = "user") -> None:
    """Create an account through versitygw's admin API; an existing one is left as it is."""
    body = (f"<Account><Access>{escape(user.access_key)}</Access>"
            f"<Secret>{escape(user.secret_key)}</Secret><Role>{role}</Role>"
            "<UserID>0</UserID><GroupID>0</GroupID><ProjectID>0</ProjectID></Account>").encode()
    url = f"http://{endpoint}/create-user"
    digest = hashlib.sha256(body).hexdigest()
    headers = sign_v4_s3(
        method="PATCH", url=urlsplit(url), region="us-east-1",
        headers={"Host": endpoint, "X-Amz-Content-Sha256": digest,
                 "X-Amz-Date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")},
        credentials=Credentials(root.access_key, root.secret_key), content_sha256=digest,
        date=datetime.now(UTC),
    )
    request = urllib.request.Request(url, data=body, method="PATCH",
                                     headers={k: str(v) for k, v in headers.items()})
    try:
        with urllib.request.urlopen(request, timeout=10):
            return
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")
        if e.code == 409 or "UserAlreadyExists" in detail or "already exists" in detail:
            return
        raise StartFailed(f"S3 server refused to create user {user.access_key}: {detail}") from e


def ensure_locked_bucket(client: Minio, bucket: str, mode: str, days: int) -> None:
    """The bucket with object lock and, if ``days`` > 0, a default retention in ``mode``; an
    existing bucket without object lock cannot get it (S3 allows lock only at creation)."""
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket, object_lock=True)
    try:
        client.get_object_lock_config(bucket)
    except S3Error as e:
        raise StartFailed(f"bucket {bucket} exists without object lock ({e.code}); object lock "
                          "can only be enabled when a bucket is created") from e
    except ValueError:  # the SDK cannot parse a configuration without a default rule
        pass
    if days > 0:
        client.set_object_lock_config(
            bucket, ObjectLockConfig(COMPLIANCE if mode == COMPLIANCE else GOVERNANCE, days, DAYS))
    if client.get_bucket_versioning(bucket).status != ENABLED:
        raise StartFailed(f"bucket {bucket} has object lock but versioning is not enabled")


def grant(client: Minio, bucket: str, mixer: S3Account, reader: S3Account | None = None) -> None:
    """The bucket policy: the mixer's account may archive into ``bucket``, the reader's may
    read it, and neither anything more."""
    statements = [_allow("callrec-mixer", mixer, MIXER_ACTIONS, bucket)]
    if reader is not None:
        statements.append(_allow("callrec-reader", reader, READER_ACTIONS, bucket))
    client.set_bucket_policy(bucket, json.dumps({"Version": "2012-10-17",
                                                 "Statement": statements}))


def _allow(sid: str, account: S3Account, actions: tuple[str, ...],
           bucket: str) -> dict[str, object]:
    return {"Sid": sid, "Effect": "Allow", "Principal": {"AWS": [account.access_key]},
            "Action": list(actions),
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}


def provision(endpoint: str, root: S3Account, bucket: str, mixer: S3Account, mode: str,
              days: int, reader: S3Account | None = None) -> None:
    """Everything the mixer's (and the readers') account needs before they start, done as
    root; idempotent."""
    client = Minio(endpoint, root.access_key, root.secret_key, secure=False)
    ensure_locked_bucket(client, bucket, mode, days)
    for account in (mixer, reader):
        if account is not None:
            create_user(endpoint, root, account)
    grant(client, bucket, mixer, reader)
