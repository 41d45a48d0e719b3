// Smoke test of a TypeScript client: types generated from /openapi.json by openapi-typescript,
// calls made by openapi-fetch, the whole checked by tsc --strict before it runs. Creates a
// tenant, puts, gets, lists and deletes a file. Run by scripts/openapi-check.sh:
//   node out/client_smoke.js URL OPERATOR_KEY
import createClient from "openapi-fetch";
import type { paths } from "./schema.js";

const [url, operatorKey] = process.argv.slice(2);

function check(ok: boolean, what: string, got: unknown): void {
  if (!ok) {
    throw new Error(`${what}: got ${JSON.stringify(got)}`);
  }
}

const operator = createClient<paths>({ baseUrl: url, headers: { Authorization: `Bearer ${operatorKey}` } });
const created = await operator.POST("/v1/tenants", { body: { slug: "smoke-ts", tier: "starter" } });
check(created.response.status === 201 && created.data !== undefined, "create tenant", created.error);
const owner = createClient<paths>({ baseUrl: url, headers: { Authorization: `Bearer ${created.data!.owner_key}` } });

const file = { params: { path: { path: "hello.txt" } } };
const put = await owner.PUT("/v1/files/{path}", {
  ...file,
  body: "hello from typescript",
  bodySerializer: (body: string) => body,
  headers: { "Content-Type": "text/plain" },
});
check(put.response.status === 201 && put.data?.size === 21 && put.data.version === 1, "put", put.data ?? put.error);
check(put.data?.content_type === "text/plain", "the content type sent", put.data?.content_type);

const got = await owner.GET("/v1/files/{path}", { ...file, parseAs: "text" });
check(got.response.status === 200 && got.data === "hello from typescript", "get", got.data);

const listed = await owner.GET("/v1/files", { params: { query: { delimiter: "/" } } });
const items = listed.data?.items.map((item) => `${item.kind} ${item.path}`);
check(JSON.stringify(items) === JSON.stringify(["file /hello.txt"]), "list", items);

const deleted = await owner.DELETE("/v1/files/{path}", file);
check(deleted.response.status === 204, "delete", deleted.response.status);
const gone = await owner.GET("/v1/files/{path}", { ...file, parseAs: "text" });
check(gone.response.status === 404, "gone", gone.response.status);
console.log("typescript client smoke: create tenant, put, get, list, delete: ok");
