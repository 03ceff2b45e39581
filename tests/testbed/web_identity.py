"""sts:AssumeRoleWithWebIdentity on the test bed, checked the way STS checks it.

moto issues credentials for any token and any role. Here, before moto answers, the token and the
role are checked in STS's order, and a refusal carries STS's error code and HTTP status (from
STS's own service model, botocore/data/sts/2011-06-15/service-2.json):

1. The token is a JWT (three base64url parts, JSON header and claims, an `iss` claim):
   else InvalidIdentityToken (400).
2. The role's account has an IAM OIDC provider whose URL is the token's `iss` without
   `https://` (moto's IAM state, the role's partition): else InvalidIdentityToken (400),
   "No OpenIDConnect provider found in your account for <iss>".
3. The issuer's keys: the issuer's OIDC discovery document (`/.well-known/openid-configuration`)
   names that issuer, and its `jwks_uri` serves the keys; cached per issuer, fetched again when
   a token names a key id the cache does not hold. Unreachable, or a discovery document for
   another issuer: InvalidIdentityToken (400), "Couldn't retrieve verification key from your
   identity provider, ...". Where the issuer is served: see below.
4. The signature (RS256/384/512 or ES256/384/512, by the key the header's `kid` names):
   else InvalidIdentityToken (400).
5. `exp` is in the future: else ExpiredTokenException (400). `nbf` and `iat`, if present, are
   not more than 5 minutes in the future (the test bed's clock skew allowance, our choice):
   else InvalidIdentityToken (400).
6. An audience of the token (`aud`, a string or a list) is one of the provider's client IDs:
   else InvalidIdentityToken (400), "Incorrect token audience".
7. The role exists, and its trust policy allows sts:AssumeRoleWithWebIdentity to the principal
   {"Federated": <provider ARN>} with the request context `<provider URL>:sub` (the token's
   `sub`), `<provider URL>:aud` (the audience that matched a client ID; with an `azp` claim,
   `:aud` is `azp` and `:oaud` the audience, as IAM documents) and `sts:RoleSessionName`,
   as decided by the IAM policy simulator (authorization.decide): else AccessDenied (403),
   "Not authorized to perform sts:AssumeRoleWithWebIdentity".

Where the issuer is served. The test bed's issuer is an EKS-shaped URL
(`https://oidc.eks.us-east-2.amazonaws.com/id/<ID>`, from moto's EKS cluster); the IAM OIDC
provider has that URL and the kube-apiserver signs ServiceAccount tokens with it
(`--service-account-issuer`). That host does not resolve here. On EKS it serves the cluster's
discovery document and keys; here the apiserver itself serves them (ServiceAccountIssuerDiscovery,
GA since Kubernetes 1.21: `/.well-known/openid-configuration` and `/openid/v1/jwks`), so the
verifier fetches them from the apiserver named by the kubeconfig in $BUCKETWIRE_TESTBED_KUBECONFIG
(its server URL, CA and admin client certificate; testbed.py sets it), and accepts them for an
issuer only if the discovery document's `issuer` is that issuer. A token from any other issuer
finds no keys, as on AWS when the issuer's host cannot be reached.

Not modelled: the provider's thumbprint list (AWS ignores it for issuers whose certificate a
well-known CA signed, as EKS's are), IdP communication timeouts, session policies and tags.
Messages: those of cases 2, 3, 6 and 7 are STS's wording as its answers quote it in public
reports; the others (1, 4, 5) are the test bed's own. The codes and statuses come from
STS's service model.
"""

import base64
import json
import os
import ssl
import tempfile
import threading
import time
import urllib.request
from urllib.parse import urlparse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

KUBECONFIG_ENV = "BUCKETWIRE_TESTBED_KUBECONFIG"
ACTION = "sts:AssumeRoleWithWebIdentity"
CLOCK_SKEW_SECONDS = 300
NO_KEY = (
    "Couldn't retrieve verification key from your identity provider,  please reference "
    "AssumeRoleWithWebIdentity documentation for requirements"
)


class Refused(Exception):
    """STS refuses the call; rendered by moto_launcher.py as STS's XML error."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid(message):
    return Refused(400, "InvalidIdentityToken", message)


def verify(form, account_id, partition):
    """None if STS would issue credentials for this AssumeRoleWithWebIdentity request (its form
    parameters), else raises Refused. `account_id` and `partition` are the request's; the role's
    ARN names the account and partition whose IAM holds the role and the provider."""
    header, claims, signing_input, signature = parse(form.get("WebIdentityToken", ""))
    role_partition, role_account, role_name = role_of(form.get("RoleArn", ""), account_id, partition)
    iam = iam_backend(role_account, role_partition)

    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise invalid("The token has no issuer (iss)")
    provider = provider_for(iam, issuer)
    if provider is None:
        raise invalid(f"No OpenIDConnect provider found in your account for {issuer}")

    key = KEYS.key(issuer, header.get("kid"))
    check_signature(header, key, signing_input, signature)
    check_times(claims)
    audience = matching_audience(claims, provider.client_id_list)

    try:
        role = iam.get_role(role_name)
    except Exception:
        raise not_authorized() from None
    decision = decide(simulation(form, role, role_account, provider, claims, audience))
    if not decision.allowed:
        raise not_authorized()
    return None


def not_authorized():
    return Refused(403, "AccessDenied", f"Not authorized to perform {ACTION}")


def b64url(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parse(token):
    """(header, claims, signing input, signature) of a compact JWS."""
    parts = token.split(".")
    if len(parts) != 3:
        raise invalid("The web identity token is not a JWT")
    try:
        header = json.loads(b64url(parts[0]))
        claims = json.loads(b64url(parts[1]))
        signature = b64url(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise invalid("The web identity token is not a JWT") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise invalid("The web identity token is not a JWT")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), signature


def role_of(role_arn, account_id, partition):
    """(partition, account, role name) of `arn:<partition>:iam::<account>:role/<path/>name`."""
    parts = role_arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iam" or not parts[5].startswith("role/"):
        raise Refused(400, "ValidationError", f"{role_arn!r} is not a valid role ARN")
    return parts[1] or partition, parts[4] or account_id, parts[5].rsplit("/", 1)[1]


def iam_backend(account_id, partition):
    from moto.iam.models import iam_backends

    return iam_backends[account_id][partition]


def provider_for(iam, issuer):
    url = issuer[len("https://") :] if issuer.startswith("https://") else None
    if url is None:
        return None  # IAM OIDC providers are https URLs only
    for provider in list(iam.open_id_providers.values()):
        if provider.url == url:
            return provider
    return None


def check_signature(header, key, signing_input, signature):
    alg = header.get("alg")
    bits = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
    digest = bits.get(str(alg)[2:]) if isinstance(alg, str) else None
    try:
        if alg in ("RS256", "RS384", "RS512") and isinstance(key, rsa.RSAPublicKey) and digest:
            key.verify(signature, signing_input, padding.PKCS1v15(), digest)
            return
        if alg in ("ES256", "ES384", "ES512") and isinstance(key, ec.EllipticCurvePublicKey) and digest:
            half = len(signature) // 2
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
            key.verify(der, signing_input, ec.ECDSA(digest))
            return
    except InvalidSignature:
        pass
    raise invalid("The token's signature does not verify with the identity provider's keys")


def check_times(claims):
    now = int(time.time())
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)):
        raise invalid("The token has no expiry (exp)")
    if now >= exp:
        raise Refused(
            400,
            "ExpiredTokenException",
            f"Token expired: current date/time {now} must be before the expiration date/time {int(exp)}",
        )
    for claim in ("nbf", "iat"):
        value = claims.get(claim)
        if value is not None and (not isinstance(value, (int, float)) or value > now + CLOCK_SKEW_SECONDS):
            raise invalid(f"The token's {claim} is in the future")


def matching_audience(claims, client_ids):
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    for audience in audiences:
        if audience in client_ids:
            return audience
    raise invalid("Incorrect token audience")


def simulation(form, role, account_id, provider, claims, audience):
    """iam-simulate's Simulation of this AssumeRoleWithWebIdentity against the role's trust policy."""
    context = {f"{provider.url}:sub": str(claims.get("sub", ""))}
    if isinstance(claims.get("azp"), str):
        context[f"{provider.url}:aud"] = claims["azp"]
        context[f"{provider.url}:oaud"] = audience
    else:
        context[f"{provider.url}:aud"] = audience
    if form.get("RoleSessionName"):
        context["sts:RoleSessionName"] = form["RoleSessionName"]
    trust = role.assume_role_policy_document
    return {
        "request": {
            "principal": provider.arn,
            "action": ACTION,
            "resource": {"resource": role.arn, "accountId": account_id},
            "contextVariables": context,
        },
        "identityPolicies": [],
        "serviceControlPolicies": [],
        "resourceControlPolicies": [],
        "resourcePolicy": json.loads(trust) if isinstance(trust, str) else trust,
    }


def decide(simulation):
    """The simulator's decision, added to the request's log line like every other decision."""
    import authorization  # the launcher's simulator client; imported when first needed

    decision = authorization.decide(simulation)
    request = simulation["request"]
    authorization.record_decision({
        "action": request["action"],
        "resource": request["resource"]["resource"],
        "principal": request["principal"],
        "result": decision.result,
        "derivedBy": "web_identity.py: the role's trust policy",
    })
    return decision


class IssuerKeys:
    """The keys of the issuers the apiserver serves, by issuer and key id; fetched on first use
    and again whenever a token names a key id that is not cached."""

    def __init__(self):
        self.lock = threading.Lock()
        self.keys = {}  # issuer -> {kid: public key}

    def key(self, issuer, kid):
        with self.lock:
            cached = self.keys.get(issuer, {})
            if kid not in cached:
                cached = fetch_keys(issuer)
                self.keys[issuer] = cached
            if kid in cached:
                return cached[kid]
            if kid is None and len(cached) == 1:
                return next(iter(cached.values()))
        raise invalid("The token's key id (kid) is not among the identity provider's keys")


KEYS = IssuerKeys()


def fetch_keys(issuer):
    """{kid: public key} from the apiserver's OIDC discovery, if it is `issuer`'s."""
    try:
        server, context = apiserver()
        discovery = get_json(f"{server}/.well-known/openid-configuration", context)
        if discovery.get("issuer") != issuer:
            raise invalid(NO_KEY)
        jwks = get_json(server + urlparse(discovery["jwks_uri"]).path, context)
        return {jwk.get("kid"): public_key(jwk) for jwk in jwks["keys"]}
    except Refused:
        raise
    except Exception:
        raise invalid(NO_KEY) from None


def get_json(url, context):
    with urllib.request.urlopen(url, context=context, timeout=5) as resp:
        return json.loads(resp.read())


def apiserver():
    """(server URL, TLS context with the cluster CA and the admin client certificate) from the
    test bed's kubeconfig."""
    import yaml

    path = os.environ.get(KUBECONFIG_ENV)
    if not path:
        raise RuntimeError(f"{KUBECONFIG_ENV} is not set")
    with open(path) as f:
        config = yaml.safe_load(f)
    context_name = config["current-context"]
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == ctx["user"])
    tls = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    # ssl loads a client certificate only from files: write them privately, load, remove.
    with tempfile.TemporaryDirectory() as private:
        cert, key = os.path.join(private, "client.crt"), os.path.join(private, "client.key")
        for name, field in ((cert, "client-certificate-data"), (key, "client-key-data")):
            with open(os.open(name, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
                out.write(base64.b64decode(user[field]))
        tls.load_cert_chain(cert, key)
    return cluster["server"].rstrip("/"), tls


def public_key(jwk):
    def number(field):
        return int.from_bytes(b64url(jwk[field]), "big")

    if jwk.get("kty") == "RSA":
        return rsa.RSAPublicNumbers(number("e"), number("n")).public_key()
    if jwk.get("kty") == "EC":
        curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}[jwk["crv"]]
        return ec.EllipticCurvePublicNumbers(number("x"), number("y"), curve).public_key()
    raise ValueError(f"unsupported key type {jwk.get('kty')}")
