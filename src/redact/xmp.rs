//! Location properties in an XMP packet (RDF/XML), found with a small tokenizer that resolves
//! namespace prefixes the way XMP readers do.
//!
//! The set redacted (a property's whole attribute `name="value"`, or its whole element from `<`
//! to the end of its closing tag, so a reader finds no property rather than an empty one):
//! * any property whose local name starts with `GPS` (any case, any namespace): `exif:GPS*`
//!   (latitude, longitude, altitude, timestamp, destination, area...), `drone-dji:Gps*`...;
//! * `photoshop:City`, `photoshop:State`, `photoshop:Country`;
//! * `Iptc4xmpCore:Location`, `Iptc4xmpCore:CountryCode`;
//! * `Iptc4xmpExt:LocationShown`, `Iptc4xmpExt:LocationCreated` (whole structures, with their
//!   City, ProvinceState, CountryName, Sublocation, GPS fields).
//!
//! Packets in UTF-16 or UTF-32 are malformed here (redacted whole by the caller).
//! Prefixes are resolved through the `xmlns:` declarations in scope; an undeclared prefix is
//! matched by its conventional name. Unbalanced markup inside a redacted element, or nesting
//! deeper than [`MAX_DEPTH`], is malformed (the caller then redacts the whole packet).

use super::source::{Fault, Res};

const NS_PHOTOSHOP: &[u8] = b"http://ns.adobe.com/photoshop/1.0/";
const NS_IPTC_CORE: &[u8] = b"http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/";
const NS_IPTC_EXT: &[u8] = b"http://iptc.org/std/Iptc4xmpExt/2008-02-29/";
const MAX_DEPTH: usize = 256;
/// Attributes on one element.
const MAX_ATTRS: usize = 4096;
/// Namespace declarations in scope (real packets have tens; each lookup scans them).
const MAX_NS: usize = 128;

#[derive(Clone, Copy, PartialEq)]
enum Ns {
    Photoshop,
    IptcCore,
    IptcExt,
    Other,
}

fn ns_kind(uri: Option<&[u8]>, prefix: &[u8]) -> Ns {
    match uri {
        Some(NS_PHOTOSHOP) => Ns::Photoshop,
        Some(NS_IPTC_CORE) => Ns::IptcCore,
        Some(NS_IPTC_EXT) => Ns::IptcExt,
        Some(_) => Ns::Other,
        None => match prefix {
            b"photoshop" => Ns::Photoshop,
            b"Iptc4xmpCore" => Ns::IptcCore,
            b"Iptc4xmpExt" => Ns::IptcExt,
            _ => Ns::Other,
        },
    }
}

fn is_location(ns: Ns, local: &[u8]) -> bool {
    if local.len() >= 3 && local[..3].eq_ignore_ascii_case(b"gps") {
        return true;
    }
    matches!(
        (ns, local),
        (Ns::Photoshop, b"City" | b"State" | b"Country")
            | (Ns::IptcCore, b"Location" | b"CountryCode")
            | (Ns::IptcExt, b"LocationShown" | b"LocationCreated")
    )
}

struct Scanner<'a> {
    /// `(prefix, uri)` declarations in scope, innermost last.
    ns: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Scanner<'a> {
    fn location(&self, qname: &[u8]) -> bool {
        let (prefix, local) = match qname.iter().position(|&c| c == b':') {
            Some(i) => (&qname[..i], &qname[i + 1..]),
            None => (&b""[..], qname),
        };
        let uri = self
            .ns
            .iter()
            .rev()
            .find(|(p, _)| *p == prefix)
            .map(|(_, u)| *u);
        is_location(ns_kind(uri, prefix), local)
    }
}

fn find_from(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|i| from + i)
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn name_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !is_space(b[i]) && !matches!(b[i], b'/' | b'>' | b'=') {
        i += 1;
    }
    i
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_space(b[i]) {
        i += 1;
    }
    i
}

/// An element's start tag: its name, attributes, and where it ends.
struct StartTag<'a> {
    name: &'a [u8],
    /// `(qname, start of name, end after closing quote, value)`.
    attrs: Vec<(&'a [u8], usize, usize, &'a [u8])>,
    /// Index after `>`.
    end: usize,
    empty: bool,
}

fn start_tag(b: &[u8], lt: usize) -> Res<StartTag<'_>> {
    let bad = Fault::Bad;
    let ne = name_end(b, lt + 1);
    let name = &b[lt + 1..ne];
    let mut attrs = Vec::new();
    let mut i = ne;
    loop {
        i = skip_space(b, i);
        match b.get(i) {
            None => return Err(bad("unterminated tag")),
            Some(b'>') => {
                return Ok(StartTag {
                    name,
                    attrs,
                    end: i + 1,
                    empty: false,
                })
            }
            Some(b'/') => {
                if b.get(i + 1) != Some(&b'>') {
                    return Err(bad("stray / in tag"));
                }
                return Ok(StartTag {
                    name,
                    attrs,
                    end: i + 2,
                    empty: true,
                });
            }
            Some(_) => {}
        }
        let a = i;
        let an = name_end(b, i);
        if an == a {
            return Err(bad("bad attribute"));
        }
        i = skip_space(b, an);
        if b.get(i) != Some(&b'=') {
            return Err(bad("attribute without value"));
        }
        i = skip_space(b, i + 1);
        let q = *b.get(i).ok_or(bad("unterminated tag"))?;
        if q != b'"' && q != b'\'' {
            return Err(bad("unquoted attribute"));
        }
        let close = b[i + 1..]
            .iter()
            .position(|&c| c == q)
            .ok_or(bad("unterminated value"))?;
        let value = &b[i + 1..i + 1 + close];
        i = i + 2 + close;
        if attrs.len() >= MAX_ATTRS {
            return Err(bad("too many attributes"));
        }
        attrs.push((&b[a..an], a, i, value));
    }
}

/// Ranges (relative to `b`) of the location properties in the XMP packet `b`.
pub(crate) fn find(b: &[u8]) -> Res<Vec<(usize, usize)>> {
    // UTF-16 or UTF-32 packets (legal, rare) are not scanned byte-wise: redact them whole.
    if b.starts_with(b"\xFE\xFF") || b.starts_with(b"\xFF\xFE") || b.iter().take(4).any(|&c| c == 0)
    {
        return Err(Fault::Bad("XMP not in UTF-8"));
    }
    let mut s = Scanner { ns: Vec::new() };
    let mut out = Vec::new();
    // Open elements: (name, ns declarations before it, start if it is a redacted property).
    let mut stack: Vec<(&[u8], usize, Option<usize>)> = Vec::new();
    let mut redacting = 0usize; // open redacted elements
    let mut i = 0;
    while let Some(lt) = find_from(b, i, b"<") {
        let rest = &b[lt..];
        if rest.starts_with(b"<?") {
            i = find_from(b, lt, b"?>").ok_or(Fault::Bad("unterminated PI"))? + 2;
        } else if rest.starts_with(b"<!--") {
            i = find_from(b, lt, b"-->").ok_or(Fault::Bad("unterminated comment"))? + 3;
        } else if rest.starts_with(b"<![CDATA[") {
            i = find_from(b, lt, b"]]>").ok_or(Fault::Bad("unterminated CDATA"))? + 3;
        } else if rest.starts_with(b"<!") {
            i = find_from(b, lt, b">").ok_or(Fault::Bad("unterminated declaration"))? + 1;
        } else if rest.starts_with(b"</") {
            let gt = find_from(b, lt, b">").ok_or(Fault::Bad("unterminated end tag"))?;
            let name = &b[lt + 2..name_end(b, lt + 2)];
            let (open, ns_mark, redact_from) = stack.pop().ok_or(Fault::Bad("stray end tag"))?;
            if open != name {
                return Err(Fault::Bad("mismatched end tag"));
            }
            s.ns.truncate(ns_mark);
            if let Some(start) = redact_from {
                redacting -= 1;
                if redacting == 0 {
                    out.push((start, gt + 1));
                }
            }
            i = gt + 1;
        } else {
            let tag = start_tag(b, lt)?;
            let ns_mark = s.ns.len();
            for &(qname, _, _, value) in &tag.attrs {
                if qname == b"xmlns" {
                    s.ns.push((b"", value));
                } else if let Some(prefix) = qname.strip_prefix(b"xmlns:") {
                    s.ns.push((prefix, value));
                }
            }
            if s.ns.len() > MAX_NS {
                return Err(Fault::Bad("too many namespace declarations"));
            }
            let hit = s.location(tag.name);
            if redacting == 0 {
                for &(qname, a, e, _) in &tag.attrs {
                    if !qname.starts_with(b"xmlns") && s.location(qname) {
                        out.push((a, e));
                    }
                }
                if hit && tag.empty {
                    out.push((lt, tag.end));
                }
            }
            if tag.empty {
                s.ns.truncate(ns_mark);
            } else {
                if stack.len() >= MAX_DEPTH {
                    return Err(Fault::Bad("XMP nested too deep"));
                }
                let redact_from = (hit || redacting > 0).then_some(lt);
                if redact_from.is_some() {
                    redacting += 1;
                }
                stack.push((tag.name, ns_mark, redact_from));
            }
            i = tag.end;
        }
    }
    if redacting > 0 {
        return Err(Fault::Bad("unterminated location property"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(x: &str) -> String {
        let mut b = x.as_bytes().to_vec();
        for (s, e) in find(x.as_bytes()).unwrap() {
            b[s..e].fill(b'#');
        }
        String::from_utf8(b).unwrap()
    }

    const PACKET: &str = r#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:ps="http://ns.adobe.com/photoshop/1.0/"
 exif:GPSLatitude="48,51.46N" exif:ExposureTime="1/50" ps:City='Paris' ps:Headline="x>y">
<exif:GPSLongitude>2,17.67E</exif:GPSLongitude>
<exif:FNumber>28/10</exif:FNumber>
<Iptc4xmpExt:LocationShown xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"><rdf:Bag><rdf:li rdf:parseType="Resource"><Iptc4xmpExt:City>Paris</Iptc4xmpExt:City></rdf:li></rdf:Bag></Iptc4xmpExt:LocationShown>
<photoshop:Country/><!-- photoshop:City="not a tag" -->
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>"#;

    #[test]
    fn redacts_the_location_set_only() {
        let r = redacted(PACKET);
        for gone in [
            "48,51.46N",
            "City='Paris'",
            "2,17.67E",
            "LocationShown",
            "<photoshop:Country/>",
        ] {
            assert!(!r.contains(gone), "{gone} still in {r}");
        }
        for kept in [
            "ExposureTime=\"1/50\"",
            "<exif:FNumber>28/10</exif:FNumber>",
            "x>y",
            "not a tag",
        ] {
            assert!(r.contains(kept), "{kept} lost in {r}");
        }
    }

    #[test]
    fn prefix_bound_to_another_uri_is_not_photoshop() {
        let x = r#"<a xmlns:photoshop="urn:other"><photoshop:City>x</photoshop:City></a>"#;
        assert!(find(x.as_bytes()).unwrap().is_empty());
        let y = r#"<a xmlns:p="http://ns.adobe.com/photoshop/1.0/"><p:City>x</p:City></a>"#;
        assert_eq!(find(y.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn every_truncation_is_handled() {
        for cut in 0..PACKET.len() {
            let _ = find(&PACKET.as_bytes()[..cut]);
        }
        let cut = PACKET.find("2,17").unwrap();
        assert!(matches!(
            find(&PACKET.as_bytes()[..cut]),
            Err(Fault::Bad(_))
        ));
    }

    #[test]
    fn utf16_packets_are_malformed() {
        let utf16: Vec<u8> = PACKET.encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert!(matches!(find(&utf16), Err(Fault::Bad(_))));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let x = "<a>".repeat(100_000);
        assert!(matches!(find(x.as_bytes()), Err(Fault::Bad(_))));
    }
}
