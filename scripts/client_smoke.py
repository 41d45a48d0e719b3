"""Smoke test of a Python client generated from /openapi.json by openapi-python-client:
create a tenant, put, get, list and delete a file. Run by scripts/openapi-check.sh.
    python3 client_smoke.py URL OPERATOR_KEY   (with the generated package on PYTHONPATH)"""
import io
import sys

from tenantry_client import AuthenticatedClient
from tenantry_client.api.files import delete_file, get_file, list_files, put_file
from tenantry_client.api.tenants import create_tenant
from tenantry_client.models import NewTenant
from tenantry_client.types import File

url, operator_key = sys.argv[1], sys.argv[2]
operator = AuthenticatedClient(base_url=url, token=operator_key)
created = create_tenant.sync_detailed(client=operator, body=NewTenant(slug="smoke", tier="starter"))
assert created.status_code == 201, (created.status_code, created.content)
owner = AuthenticatedClient(base_url=url, token=created.parsed.owner_key)

put = put_file.sync_detailed(
    "hello.txt", client=owner, body=File(payload=io.BytesIO(b"hello from python"), mime_type="text/plain")
)
assert put.status_code == 201, (put.status_code, put.content)
assert put.parsed.size == 17 and put.parsed.version == 1, put.parsed

got = get_file.sync_detailed("hello.txt", client=owner)
assert got.status_code == 200 and got.content == b"hello from python", (got.status_code, got.content)

listed = list_files.sync_detailed(client=owner)
assert listed.status_code == 200, (listed.status_code, listed.content)
assert [f.path for f in listed.parsed.items] == ["/hello.txt"], listed.parsed

deleted = delete_file.sync_detailed("hello.txt", client=owner)
assert deleted.status_code == 204, (deleted.status_code, deleted.content)
gone = get_file.sync_detailed("hello.txt", client=owner)
assert gone.status_code == 404, gone.status_code
print("python client smoke: create tenant, put, get, list, delete: ok")
