//! Schemas the OpenAPI document names that no type of the API has.

/// A body of raw bytes (a file, a bundle): `type: string, format: binary`, which client
/// generators turn into a file or byte-stream parameter.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl utoipa::ToSchema for Binary {}

/// What a listing item is (`GET /v1/files`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // names the values of `ListedItem.kind`; only the document reads it
pub enum ListedKind {
    File,
    Folder,
}

/// One item of a file listing: a file with its metadata or, with `delimiter=/`, a folder under
/// the prefix, which has only `kind` and `path` (ending in `/`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the document's description of `tenantry_core::store::ListedEntry`
pub struct ListedItem {
    kind: ListedKind,
    /// A folder's path ends in `/`.
    path: String,
    #[schema(nullable = false)]
    size: Option<u64>,
    /// Quoted, as in the `ETag` header.
    #[schema(nullable = false)]
    etag: Option<String>,
    #[schema(nullable = false)]
    version: Option<u64>,
    #[schema(nullable = false)]
    content_type: Option<String>,
    #[schema(nullable = false, format = DateTime)]
    created_at: Option<String>,
    #[schema(nullable = false, format = DateTime)]
    updated_at: Option<String>,
}
