"""sts:AssumeRoleWithWebIdentity on the test bed (placeholder: lets every token through, as moto
does; being replaced by a verifier of the token and the role's trust policy, issue 14 item 2)."""


class Refused(Exception):
    """STS refuses the call; rendered by moto_launcher.py as STS's XML error."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def verify(form, account_id, partition):
    return None
