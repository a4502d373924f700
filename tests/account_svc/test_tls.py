"""TLS: a server cert from a throwaway CA made here; only clients trusting the CA get in."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from feedchat.account.v1 import account_pb2 as pb
from feedchat.account.v1 import account_pb2_grpc
from feedchat_runtime.server import open_channel
from tests.account_svc.conftest import PASSWORD, StartAccount


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) for 127.0.0.1 and localhost, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("feedchat test CA"))
        .issuer_name(_name("feedchat test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(server_key))
    return ca_path, cert_path, key_path


async def test_tls_server_serves_clients_that_trust_the_ca_only(
    start_account: StartAccount, tmp_path: Path
) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    account = await start_account(tls_cert=str(cert), tls_key=str(key))

    # A client given the CA (the runtime's own channel factory, --tls-ca) gets in.
    client_config = dataclasses.replace(account.config, tls_ca=str(ca))
    async with open_channel(client_config, account.address) as channel:
        stub = account_pb2_grpc.AccountServiceStub(channel)
        reply = await stub.SignUp(
            pb.SignUpRequest(username="secure", password=PASSWORD), timeout=10
        )
        assert reply.user_id > 0

    # A TLS client with only the default roots fails the handshake.
    async with grpc.aio.secure_channel(account.address, grpc.ssl_channel_credentials()) as channel:
        stub = account_pb2_grpc.AccountServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SignUp(pb.SignUpRequest(username="nocert", password=PASSWORD), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

    # A plaintext client gets nowhere either (the fixture's channel is plaintext).
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await account.stub.SignUp(pb.SignUpRequest(username="plain", password=PASSWORD), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
