//! The content type a file is stored with: the one its writer gave, else one guessed from the
//! file name's extension, else `application/octet-stream`.

use crate::path::TenantPath;

/// What `curl --data-binary` sends unless told otherwise: never a file's real type when the
/// body goes to a file path, so it counts as no type given.
const CURL_DEFAULT: &str = "application/x-www-form-urlencoded";

const UNKNOWN: &str = "application/octet-stream";

/// The content type to store for `path` when its writer sent `given`. A given type longer than
/// 255 bytes or holding control characters is not kept (it would be sent back as a header).
pub fn for_file(path: &TenantPath, given: Option<&str>) -> String {
    let given = given.map(str::trim).filter(|c| {
        !c.is_empty()
            && c.len() <= 255
            && !c.chars().any(char::is_control)
            && !c.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(CURL_DEFAULT)
    });
    match given {
        Some(c) => c.to_owned(),
        None => guess(path.as_str()).unwrap_or(UNKNOWN).to_owned(),
    }
}

/// Extensions whose usual meaning in a workspace differs from the registered one (`.ts` is an
/// MPEG transport stream to the media types registry, TypeScript to every agent and developer).
const WORKSPACE_TYPES: &[(&str, &str)] = &[
    ("ts", "text/typescript"),
    ("tsx", "text/typescript"),
    ("mts", "text/typescript"),
    ("cts", "text/typescript"),
    ("md", "text/markdown"),
    ("rs", "text/x-rust"),
    ("toml", "application/toml"),
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
];

/// The usual type of a file named like `path`, by its extension (`None` when it has none or an
/// unknown one).
pub fn guess(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty() {
        return None; // a dotfile such as `.env` has no extension
    }
    let lower = ext.to_ascii_lowercase();
    match WORKSPACE_TYPES.iter().find(|(e, _)| *e == lower) {
        Some((_, t)) => Some(t),
        None => mime_guess::from_ext(ext).first_raw(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(path: &str, given: Option<&str>) -> String {
        for_file(&TenantPath::parse(path).unwrap(), given)
    }

    #[test]
    fn a_given_type_wins_and_a_missing_one_is_guessed_from_the_extension() {
        assert_eq!(stored("/notes.txt", None), "text/plain");
        assert_eq!(stored("/a/b/report.JSON", None), "application/json");
        assert_eq!(stored("/site/index.html", None), "text/html");
        assert_eq!(stored("/src/app.ts", None), "text/typescript", "TypeScript, not a video stream");
        assert_eq!(stored("/Cargo.TOML", None), "application/toml");
        assert_eq!(stored("/photo.png", Some("")), "image/png");
        assert_eq!(stored("/notes.txt", Some("text/markdown")), "text/markdown");
        assert_eq!(stored("/data.bin", Some("application/x-custom")), "application/x-custom");
    }

    #[test]
    fn curls_form_default_counts_as_no_type() {
        assert_eq!(stored("/notes.txt", Some("application/x-www-form-urlencoded")), "text/plain");
        assert_eq!(stored("/x", Some("Application/X-WWW-Form-Urlencoded; charset=utf-8")), UNKNOWN);
    }

    #[test]
    fn no_extension_a_dotfile_or_an_unknown_one_is_octet_stream() {
        for p in ["/Makefile", "/.env", "/dir.d/file", "/archive.zzzunknown"] {
            assert_eq!(stored(p, None), UNKNOWN, "{p}");
        }
        assert_eq!(stored("/x", Some("text/plain\u{7}")), UNKNOWN);
        assert_eq!(stored("/x", Some(&"a".repeat(256))), UNKNOWN);
    }
}
