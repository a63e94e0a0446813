"""``notifier dkim keygen``: a new DKIM key pair and the DNS TXT record to publish."""

from __future__ import annotations

import click

from notifier.delivery.dkim import generate_key, parse_private_key

__all__ = ["dkim"]

#: DNS TXT character-strings hold at most 255 bytes; longer records are split (RFC 7208 3.3).
_TXT_CHUNK = 250


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def dkim() -> None:
    """DKIM keys."""


@dkim.command()
@click.option("--selector", required=True, help="The DKIM selector, e.g. s1 or 2026a.")
@click.option(
    "--domain",
    default="example.com",
    show_default=True,
    help="The signing domain (DKIM_DOMAIN), for the record's name.",
)
@click.option(
    "--type",
    "key_type",
    type=click.Choice(["rsa", "ed25519"]),
    default="rsa",
    show_default=True,
    help="RSA is understood everywhere; Ed25519 (RFC 8463) as a second, dual signature.",
)
@click.option("--bits", type=click.IntRange(1024, 4096), default=2048, show_default=True)
def keygen(selector: str, domain: str, key_type: str, bits: int) -> None:
    """Print a new private key (PEM) and the TXT record to publish for it."""
    pem = generate_key("rsa" if key_type == "rsa" else "ed25519", bits=bits)
    key = parse_private_key(pem, selector=selector, domain=domain, setting="generated key")
    record = key.dns_record
    chunks = [record[i : i + _TXT_CHUNK] for i in range(0, len(record), _TXT_CHUNK)]
    quoted = " ".join(f'"{chunk}"' for chunk in chunks)
    click.echo("# Private key: keep it secret. Give it to the worker as DKIM_PRIVATE_KEY_FILE")
    click.echo(f"# with DKIM_SELECTOR={selector}, or as DKIM_SECONDARY_PRIVATE_KEY_FILE with")
    click.echo(f"# DKIM_SECONDARY_SELECTOR={selector} for a second (dual) signature.")
    click.echo(pem.decode("ascii").rstrip("\n"))
    click.echo("")
    click.echo(f"# DNS: publish this TXT record (zone-file syntax; {len(chunks)} string(s)):")
    click.echo(f"{key.dns_name}. IN TXT ( {quoted} )")
    click.echo("")
    click.echo("# The same value on one line, for DNS providers' web forms:")
    click.echo(record)
