//! File name extension -> media kind, the part of Android's MIME table the rules need.
//!
//! Like MediaProvider, the kind is decided by the extension alone (not by content), compared
//! case-insensitively. Unknown extensions, names without one and non-UTF-8 extensions are
//! [`MediaKind::Other`].

/// What a file is, for the media permission rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    /// Documents, downloads, unknown types: no media permission covers them.
    Other,
}

impl MediaKind {
    pub fn is_media(self) -> bool {
        self != MediaKind::Other
    }
}

/// Longest extension in the table; longer ones are `Other` without looking.
const MAX_EXT: usize = 8;

/// The kind of a file name (the last path component, or a whole path: only the text after the
/// last '.' of the last component counts).
pub fn kind_of(name: &[u8]) -> MediaKind {
    let name = match name.iter().rposition(|&b| b == b'/') {
        Some(slash) => &name[slash + 1..],
        None => name,
    };
    let Some(dot) = name.iter().rposition(|&b| b == b'.') else {
        return MediaKind::Other;
    };
    let ext = &name[dot + 1..];
    if ext.is_empty() || ext.len() > MAX_EXT {
        return MediaKind::Other;
    }
    let mut buf = [0u8; MAX_EXT];
    let lower = &mut buf[..ext.len()];
    lower.copy_from_slice(ext);
    lower.make_ascii_lowercase();
    kind_of_lower_ext(lower)
}

fn kind_of_lower_ext(ext: &[u8]) -> MediaKind {
    match ext {
        // Images, including camera raw formats (image/x-*).
        b"jpg" | b"jpeg" | b"jpe" | b"jfif" | b"png" | b"gif" | b"webp" | b"heic" | b"heif"
        | b"heics" | b"heifs" | b"avif" | b"bmp" | b"wbmp" | b"ico" | b"tif" | b"tiff" | b"svg"
        | b"svgz" | b"jxl" | b"dng" | b"cr2" | b"cr3" | b"crw" | b"nef" | b"nrw" | b"arw"
        | b"srf" | b"sr2" | b"orf" | b"raf" | b"rw2" | b"pef" | b"srw" | b"3fr" | b"erf"
        | b"kdc" | b"mef" | b"mos" | b"mrw" | b"x3f" => MediaKind::Image,
        // Video.
        b"mp4" | b"m4v" | b"mkv" | b"webm" | b"3gp" | b"3gpp" | b"3g2" | b"3gpp2" | b"mov"
        | b"qt" | b"avi" | b"ts" | b"m2ts" | b"mts" | b"mpg" | b"mpeg" | b"mpe" | b"m2v"
        | b"vob" | b"wmv" | b"asf" | b"flv" | b"f4v" | b"ogv" | b"divx" => MediaKind::Video,
        // Audio.
        b"mp3" | b"m4a" | b"m4b" | b"aac" | b"ogg" | b"oga" | b"opus" | b"flac" | b"wav"
        | b"amr" | b"awb" | b"mid" | b"midi" | b"xmf" | b"mxmf" | b"rtttl" | b"rtx" | b"ota"
        | b"imy" | b"smf" | b"wma" | b"3ga" | b"mka" | b"aif" | b"aiff" | b"aifc" | b"weba"
        | b"ape" | b"wv" | b"mpga" | b"ac3" | b"dsf" | b"dff" => MediaKind::Audio,
        _ => MediaKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MediaKind::*;

    #[test]
    fn kinds() {
        let cases: &[(&[u8], MediaKind)] = &[
            (b"IMG_0001.jpg", Image),
            (b"IMG_0001.JPG", Image),
            (b"a.JpEg", Image),
            (b"photo.heic", Image),
            (b"photo.HEIF", Image),
            (b"x.png", Image),
            (b"x.gif", Image),
            (b"x.webp", Image),
            (b"x.bmp", Image),
            (b"x.dng", Image),
            (b"x.CR2", Image),
            (b"x.nef", Image),
            (b"x.arw", Image),
            (b"x.avif", Image),
            (b"x.tif", Image),
            (b"x.tiff", Image),
            (b"v.mp4", Video),
            (b"v.M4V", Video),
            (b"v.mkv", Video),
            (b"v.webm", Video),
            (b"v.3gp", Video),
            (b"v.3g2", Video),
            (b"v.mov", Video),
            (b"v.avi", Video),
            (b"v.ts", Video),
            (b"v.mpg", Video),
            (b"v.mpeg", Video),
            (b"v.wmv", Video),
            (b"v.flv", Video),
            (b"s.mp3", Audio),
            (b"s.m4a", Audio),
            (b"s.aac", Audio),
            (b"s.ogg", Audio),
            (b"s.oga", Audio),
            (b"s.opus", Audio),
            (b"s.FLAC", Audio),
            (b"s.wav", Audio),
            (b"s.amr", Audio),
            (b"s.awb", Audio),
            (b"s.mid", Audio),
            (b"s.midi", Audio),
            (b"s.wma", Audio),
            (b"s.3ga", Audio),
            (b"s.mka", Audio),
            (b"doc.pdf", Other),
            (b"notes.txt", Other),
            (b"archive.tar.gz", Other),
            (b"jpg", Other),
            (b"noext", Other),
            (b"trailingdot.", Other),
            (b"", Other),
            (b".nomedia", Other),
            (b".jpg", Image),
            (b"x.jpg.txt", Other),
            (b"x.txt.jpg", Image),
            (b"dir.jpg/file", Other),
            (b"DCIM/Camera/IMG_1.JPG", Image),
            (b"x.verylongextension", Other),
            (b"x.\xff\xfe", Other),
            (b"\xff\xfe.mp3", Audio),
            (b"x.j\xc3\xa9g", Other),
        ];
        for &(name, kind) in cases {
            assert_eq!(kind_of(name), kind, "{:?}", String::from_utf8_lossy(name));
        }
    }
}
