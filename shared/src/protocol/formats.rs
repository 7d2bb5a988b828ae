//! Which document formats Document Server opens, as which type, and in which mode.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentType {
    Word,
    Cell,
    Slide,
    Pdf,
    Diagram,
}

impl DocumentType {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentType::Word => "word",
            DocumentType::Cell => "cell",
            DocumentType::Slide => "slide",
            DocumentType::Pdf => "pdf",
            DocumentType::Diagram => "diagram",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub document_type: DocumentType,
    /// Opens for editing (else view only).
    pub editable: bool,
}

const EDIT: &[(DocumentType, &[&str])] = &[
    (
        DocumentType::Word,
        &[
            "docx", "doc", "odt", "rtf", "txt", "html", "docm", "dotm", "dotx", "ott",
        ],
    ),
    (
        DocumentType::Cell,
        &[
            "xlsx", "xls", "ods", "csv", "xlsb", "xlsm", "xltm", "xltx", "ots",
        ],
    ),
    (
        DocumentType::Slide,
        &[
            "pptx", "ppt", "odp", "pptm", "potm", "potx", "ppsm", "ppsx", "otp",
        ],
    ),
    (DocumentType::Pdf, &["pdf"]),
];

const VIEW: &[(DocumentType, &[&str])] = &[
    (
        DocumentType::Word,
        &[
            "dot", "epub", "fb2", "fodt", "hml", "htm", "hwp", "hwpx", "md", "mht", "mhtml",
            "pages", "stw", "sxw", "wps", "wpt", "xml",
        ],
    ),
    (
        DocumentType::Cell,
        &["et", "ett", "fods", "numbers", "sxc", "tsv", "xlt"],
    ),
    (
        DocumentType::Slide,
        &["dps", "dpt", "fodp", "key", "odg", "pot", "pps", "sxi"],
    ),
    (DocumentType::Pdf, &["djvu", "oxps", "xps"]),
    (
        DocumentType::Diagram,
        &["vsdm", "vsdx", "vssm", "vssx", "vstm", "vstx"],
    ),
];

/// Looks up an extension for a Document Server of the given major version.
pub fn lookup(extension: &str, server_major: u32) -> Option<Format> {
    let ext = extension.to_ascii_lowercase();
    let find = |table: &[(DocumentType, &[&str])]| {
        table
            .iter()
            .find(|(_, exts)| exts.contains(&ext.as_str()))
            .map(|(t, _)| *t)
    };
    let (document_type, mut editable) = match (find(EDIT), find(VIEW)) {
        (Some(t), _) => (t, true),
        (None, Some(t)) => (t, false),
        (None, None) => return None,
    };
    if server_major < 9 {
        // 8.x has no diagram editor and cannot edit xlsb.
        if document_type == DocumentType::Diagram {
            return None;
        }
        if ext == "xlsb" {
            editable = false;
        }
    }
    Some(Format {
        document_type,
        editable,
    })
}

/// `lookup`, or a 415 that lists what is supported.
pub fn require(extension: &str, server_major: u32) -> Result<Format> {
    lookup(extension, server_major).ok_or_else(|| {
        let mut all: Vec<&str> = EDIT
            .iter()
            .chain(VIEW)
            .flat_map(|(t, exts)| {
                let skip = server_major < 9 && *t == DocumentType::Diagram;
                exts.iter().copied().filter(move |_| !skip)
            })
            .collect();
        all.sort_unstable();
        Error::UnsupportedFormat(format!(
            "`.{extension}` cannot be opened; supported formats: {}",
            all.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_table() {
        assert_eq!(
            lookup("DOCX", 9),
            Some(Format {
                document_type: DocumentType::Word,
                editable: true
            })
        );
        assert_eq!(lookup("doc", 9).map(|f| f.editable), Some(true));
        assert_eq!(
            lookup("odp", 9).map(|f| f.document_type),
            Some(DocumentType::Slide)
        );
        assert_eq!(
            lookup("md", 9),
            Some(Format {
                document_type: DocumentType::Word,
                editable: false
            })
        );
        assert_eq!(
            lookup("vsdx", 9).map(|f| f.document_type),
            Some(DocumentType::Diagram)
        );
        assert_eq!(lookup("vsdx", 8), None);
        assert_eq!(lookup("xlsb", 8).map(|f| f.editable), Some(false));
        assert_eq!(lookup("xlsb", 9).map(|f| f.editable), Some(true));
        assert_eq!(lookup("exe", 9), None);
        let err = require("exe", 9).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(err.to_string().contains("docx"));
    }
}
