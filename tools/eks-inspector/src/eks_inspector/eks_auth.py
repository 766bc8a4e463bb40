"""EKS bearer tokens minted from AWS credentials, the way `aws eks get-token` does.

EKS accepts a presigned STS GetCallerIdentity URL carrying the cluster name in the
signed `x-k8s-aws-id` header; the API server's authenticator replays it to STS to learn
who is calling. Minting locally means no exec plugin and no awscli in the image.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

TOKEN_PREFIX = "k8s-aws-v1."
#: STS presigned URLs for EKS are valid 60 s to start a session; the token itself is
#: honoured for 15 minutes, so refresh well before that.
PRESIGN_SECONDS = 60
TOKEN_LIFETIME = 15 * 60
REFRESH_AFTER = 10 * 60
CLUSTER_ID_HEADER = "x-k8s-aws-id"


@dataclass(frozen=True)
class EksToken:
    token: str
    expires_at: float


def mint_token(cluster_name: str, region: str, session: Any | None = None) -> EksToken:
    """Return a bearer token for `cluster_name` signed with the ambient AWS credentials."""
    import boto3

    session = session or boto3.Session(region_name=region)
    sts = session.client("sts", region_name=region)

    def add_cluster_header(request: Any, **_: Any) -> None:
        request.headers[CLUSTER_ID_HEADER] = cluster_name

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
    url = sts.generate_presigned_url(
        "get_caller_identity", Params={}, ExpiresIn=PRESIGN_SECONDS, HttpMethod="GET"
    )
    encoded = base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")
    return EksToken(token=TOKEN_PREFIX + encoded, expires_at=time.time() + TOKEN_LIFETIME)


def decode_token(token: str) -> str:
    """The presigned URL inside a token (for tests and debugging; it holds no secret key)."""
    if not token.startswith(TOKEN_PREFIX):
        raise ValueError("not an EKS token")
    body = token[len(TOKEN_PREFIX):]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8")


@dataclass(frozen=True)
class EksEndpoint:
    server: str
    ca_data: str


def cluster_endpoint(cluster_name: str, region: str, session: Any | None = None) -> EksEndpoint:
    """API server URL and CA bundle of an EKS cluster, from DescribeCluster."""
    import boto3

    session = session or boto3.Session(region_name=region)
    cluster = session.client("eks", region_name=region).describe_cluster(name=cluster_name)["cluster"]
    ca_b64 = (cluster.get("certificateAuthority") or {}).get("data") or ""
    ca = base64.b64decode(ca_b64).decode("utf-8", "replace") if ca_b64 else ""
    endpoint = cluster.get("endpoint") or ""
    if not endpoint:
        raise ValueError(f"EKS cluster {cluster_name!r} has no endpoint yet (status {cluster.get('status')})")
    return EksEndpoint(server=endpoint, ca_data=ca)
