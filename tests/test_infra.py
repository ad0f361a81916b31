"""infra/: every CloudFormation template lints clean (cfn-lint, plus the serverless rules for
SAM templates), and the IAM it grants stays least-privilege."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
TEMPLATES = sorted(INFRA.glob("*.yaml"))
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
# Regions a team is likely to deploy to; the templates take the region from the deployment.
REGIONS = ("us-east-1", "eu-west-1", "eu-west-2", "eu-central-1")


def cfn_lint(template: Path) -> subprocess.CompletedProcess:
    """cfn-lint with every finding counted (informational ones too)."""
    args = [str(CFN_LINT), "--non-zero-exit-code", "informational", "--regions", *REGIONS]
    if "Transform" in load(template):
        args += ["--append-rules", "cfn_lint_serverless.rules"]
    return subprocess.run([*args, "--", str(template)], capture_output=True, text=True, cwd=ROOT)


def load(template: Path) -> dict:
    decoded, problems = decode(str(template))
    assert not problems, f"{template.name}: {problems}"
    return decoded


def test_infra_has_the_two_stacks() -> None:
    assert {path.name for path in TEMPLATES} == {"foundation.yaml", "api.yaml"}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_template_lints_clean(template: Path) -> None:
    result = cfn_lint(template)
    assert result.returncode == 0, f"cfn-lint {template.name}:\n{result.stdout}{result.stderr}"


def test_cfn_lint_reports_what_it_finds(tmp_path: Path) -> None:
    """The lint above can fail: a careless SAM template gets findings from both rule sets."""
    careless = tmp_path / "careless.yaml"
    careless.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  Bucket:\n    Type: AWS::S3::Bucket\n    Properties:\n"
        "      VersioningConfiguration:\n        Status: On\n"
        "  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        "      PackageType: Image\n      ImageUri: 123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1\n"
    )
    result = cfn_lint(careless)
    assert result.returncode != 0
    assert "E3030" in result.stdout, result.stdout  # cfn-lint: not a valid versioning status
    assert "WS1000" in result.stdout, result.stdout  # serverless rules: no tracing


def role_statements(template: dict, role: str) -> list[dict]:
    properties = template["Resources"][role]["Properties"]
    return [statement for policy in properties["Policies"] for statement in policy["PolicyDocument"]["Statement"]]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def s3_grants(statements: list[dict]) -> dict[str, list]:
    """S3 action -> the resources it is allowed on (intrinsic functions unresolved)."""
    grants: dict[str, list] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"wildcard action {action}"
            if action.startswith("s3:"):
                grants.setdefault(action, []).extend(as_list(statement["Resource"]))
    return grants


def test_api_may_only_read_the_remote_and_the_registry() -> None:
    grants = s3_grants(role_statements(load(INFRA / "api.yaml"), "ApiFunctionRole"))
    assert set(grants) == {"s3:GetObject", "s3:ListBucket"}
    def imported(name: str) -> dict:
        return {"Fn::ImportValue": {"Fn::Sub": f"${{FoundationStackName}}-{name}"}}

    assert grants["s3:GetObject"] == [
        {"Fn::Sub": ["arn:${AWS::Partition}:s3:::${Bucket}/${Prefix}/*",
                     {"Bucket": imported("BucketName"), "Prefix": imported(prefix)}]}
        for prefix in ("DvcPrefix", "RegistryPrefix")
    ]


def test_flow_runs_read_and_write_their_prefixes_and_delete_nothing() -> None:
    template = load(INFRA / "foundation.yaml")
    grants = s3_grants(role_statements(template, "FlowTaskRole"))
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= set(grants)
    assert not [action for action in grants if "Delete" in action or "Acl" in action or "Policy" in action]
    own_prefixes = [{"Fn::Sub": f"${{ArtifactBucket.Arn}}/${{{prefix}}}/*"}
                    for prefix in ("DvcPrefix", "RegistryPrefix", "ResultsPrefix")]
    assert grants["s3:PutObject"] == grants["s3:GetObject"] == own_prefixes
    # ECS pulls only the flow-runner image and writes only the flow log group.
    execution = role_statements(template, "FlowExecutionRole")
    pull = next(s for s in execution if s["Sid"] == "PullFlowRunner")
    assert pull["Resource"] == {"Fn::GetAtt": ["FlowRunnerRepository", "Arn"]}


def test_bucket_is_versioned_encrypted_private_and_tls_only() -> None:
    resources = load(INFRA / "foundation.yaml")["Resources"]
    bucket = resources["ArtifactBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(bucket["PublicAccessBlockConfiguration"].values()) and len(bucket["PublicAccessBlockConfiguration"]) == 4
    statements = resources["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert {"Effect": "Deny", "Principal": "*", "Action": "s3:*"}.items() <= statements[0].items()
    assert statements[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def sam_translated(template: Path) -> dict:
    """The template as CloudFormation deploys it: SAM's own translator (the transform
    CloudFormation runs), so the routes it generates are the ones checked."""
    import json

    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    plain = json.loads(json.dumps(load(template)))
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGIONS[0]))
    return translator.translate(plain, {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/pricelineage/api:1"})


def test_every_route_of_the_api_requires_a_signed_iam_request() -> None:
    resources = sam_translated(INFRA / "api.yaml")["Resources"]
    (api,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    assert not [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Route"]  # all in the body
    body = api["Body"]
    schemes = body.get("components", {}).get("securitySchemes", {})
    assert schemes.get("AWS_IAM", {}).get("x-amazon-apigateway-authtype") == "awsSigv4", "no IAM authorizer"
    operations = {(path, method): spec for path, methods in body["paths"].items() for method, spec in methods.items()}
    assert set(operations) == {("/{proxy+}", "x-amazon-apigateway-any-method"), ("/", "get")}
    for route, spec in operations.items():
        assert spec.get("security") == [{"AWS_IAM": []}], f"{route} lets unsigned requests through"
    # Callers get exactly execute-api:Invoke on this API, from the policy the stack outputs.
    (statement,) = resources["ApiInvokePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    assert all("${PriceHttpApi}/$default/" in resource["Fn::Sub"] for resource in statement["Resource"])
