"""EKS control-plane views through the AWS API (boto3), offered only with AWS credentials.

What kubectl cannot see: the cluster's own configuration, managed node groups, add-ons,
access entries and upgrade insights. IAM denials read like RBAC denials: one line
naming the action that was refused.
"""

from __future__ import annotations

from typing import Any

from eks_inspector.context import Inspector
from eks_inspector.errors import InspectorError
from eks_inspector.render import Document

MAX_ITEMS = 100


def aws_credentials_present() -> bool:
    import boto3

    try:
        return boto3.Session().get_credentials() is not None
    except Exception:  # a broken profile means "no usable credentials", not a crash
        return False


class Eks:
    def __init__(self, ins: Inspector) -> None:
        import boto3
        from botocore.config import Config

        self.ins = ins
        t = ins.settings.call_timeout
        session = ins.aws or boto3.Session(region_name=ins.settings.aws_region)  # a configured cluster's role
        self.client = session.client(
            "eks", region_name=ins.settings.aws_region,
            config=Config(connect_timeout=min(t, 10), read_timeout=t, retries={"max_attempts": 2}))

    def _call(self, action: str, **params: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        op = "".join(p.capitalize() for p in action.split("_"))
        try:
            out = getattr(self.client, action)(**params)
        except ClientError as exc:
            err = exc.response.get("Error") or {}
            code = err.get("Code", "Error")
            msg = " ".join(str(err.get("Message", "")).split())[:300]
            if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
                raise InspectorError(f"forbidden: IAM denies eks:{op}; grant it to this server's role") from None
            if code == "ResourceNotFoundException":
                raise InspectorError(f"not found: {msg or op}") from None
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if status == 404 or code in ("404", "NotFound", "UnknownOperationException"):
                raise InspectorError(f"eks:{op} is not offered by this EKS endpoint ({code})") from None
            raise InspectorError(f"eks:{op} failed: {code}: {msg}") from None
        except BotoCoreError as exc:
            raise InspectorError(f"eks:{op} failed: {' '.join(str(exc).split())[:300]}") from None
        out.pop("ResponseMetadata", None)
        return out

    def cluster_name(self, cluster: str | None) -> str:
        name = cluster or self.ins.settings.eks_cluster
        if not name:
            raise InspectorError("name the EKS cluster (cluster=...), or set INSPECTOR_EKS_CLUSTER")
        return name

    def _list(self, action: str, key: str, **params: Any) -> list[Any]:
        items: list[Any] = []
        token = None
        while True:
            page = self._call(action, **params, **({"nextToken": token} if token else {}))
            items.extend(page.get(key) or [])
            token = page.get("nextToken")
            if not token or len(items) >= MAX_ITEMS:
                return items[:MAX_ITEMS]


def _cluster_view(c: dict[str, Any]) -> dict[str, Any]:
    vpc = c.get("resourcesVpcConfig") or {}
    view = {k: c.get(k) for k in ("name", "arn", "status", "version", "platformVersion", "endpoint", "roleArn",
                                  "createdAt") if c.get(k) is not None}
    view["endpointAccess"] = {"public": vpc.get("endpointPublicAccess"), "private": vpc.get("endpointPrivateAccess"),
                              "publicAccessCidrs": vpc.get("publicAccessCidrs")}
    view["network"] = {"vpcId": vpc.get("vpcId"), "subnetIds": vpc.get("subnetIds"),
                       "securityGroupIds": vpc.get("securityGroupIds"),
                       "clusterSecurityGroupId": vpc.get("clusterSecurityGroupId"),
                       **(c.get("kubernetesNetworkConfig") or {})}
    if c.get("accessConfig"):
        view["accessConfig"] = c["accessConfig"]
    logging = [t for s in (c.get("logging") or {}).get("clusterLogging") or [] if s.get("enabled")
               for t in s.get("types") or []]
    view["controlPlaneLogging"] = logging
    if (c.get("health") or {}).get("issues"):
        view["healthIssues"] = c["health"]["issues"]
    if c.get("tags"):
        view["tags"] = c["tags"]
    if (c.get("certificateAuthority") or {}).get("data"):
        view["certificateAuthority"] = "<present>"
    return view


def describe_cluster(ins: Inspector, cluster: str | None = None) -> Document:
    eks = Eks(ins)
    name = eks.cluster_name(cluster)
    return Document(_cluster_view(eks._call("describe_cluster", name=name)["cluster"]), title=f"EKS cluster {name}")


def nodegroups(ins: Inspector, cluster: str | None = None, nodegroup: str | None = None) -> Document:
    eks = Eks(ins)
    name = eks.cluster_name(cluster)
    if nodegroup:
        ng = eks._call("describe_nodegroup", clusterName=name, nodegroupName=nodegroup)["nodegroup"]
        return Document(ng, title=f"EKS node group {nodegroup} of {name}")
    names = eks._list("list_nodegroups", "nodegroups", clusterName=name)
    groups = []
    for ng_name in names[:20]:
        ng = eks._call("describe_nodegroup", clusterName=name, nodegroupName=ng_name)["nodegroup"]
        groups.append({k: ng.get(k) for k in ("nodegroupName", "status", "version", "releaseVersion", "capacityType",
                                               "instanceTypes", "amiType", "scalingConfig") if ng.get(k) is not None}
                      | ({"healthIssues": ng["health"]["issues"]} if (ng.get("health") or {}).get("issues") else {}))
    notes = [f"showing details of 20 of {len(names)} node groups"] if len(names) > 20 else []
    return Document({"cluster": name, "nodegroups": groups}, notes=notes)


def addons(ins: Inspector, cluster: str | None = None, addon: str | None = None) -> Document:
    eks = Eks(ins)
    name = eks.cluster_name(cluster)
    if addon:
        return Document(eks._call("describe_addon", clusterName=name, addonName=addon)["addon"])
    items = []
    for a in eks._list("list_addons", "addons", clusterName=name)[:30]:
        d = eks._call("describe_addon", clusterName=name, addonName=a)["addon"]
        items.append({k: d.get(k) for k in ("addonName", "addonVersion", "status", "serviceAccountRoleArn")
                      if d.get(k) is not None} | ({"issues": d["health"]["issues"]}
                                                   if (d.get("health") or {}).get("issues") else {}))
    return Document({"cluster": name, "addons": items})


def access_entries(ins: Inspector, cluster: str | None = None, principal_arn: str | None = None) -> Document:
    eks = Eks(ins)
    name = eks.cluster_name(cluster)
    if principal_arn:
        entry = eks._call("describe_access_entry", clusterName=name, principalArn=principal_arn)["accessEntry"]
        policies = eks._list("list_associated_access_policies", "associatedAccessPolicies", clusterName=name,
                             principalArn=principal_arn)
        return Document({"accessEntry": entry, "associatedAccessPolicies": policies})
    arns = eks._list("list_access_entries", "accessEntries", clusterName=name)
    return Document({"cluster": name, "accessEntries": arns})


def insights(ins: Inspector, cluster: str | None = None, insight_id: str | None = None) -> Document:
    eks = Eks(ins)
    name = eks.cluster_name(cluster)
    if insight_id:
        return Document(eks._call("describe_insight", clusterName=name, id=insight_id)["insight"])
    return Document({"cluster": name, "insights": eks._list("list_insights", "insights", clusterName=name)})
