//! The byte ranges of a file that carry location, and zeroing them in a read buffer.

/// Half-open byte range `[start, end)` of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

/// More spans than this in one file is not a real file: they collapse into one covering span.
const MAX_SPANS: usize = 4096;

/// Sorted, disjoint, non-adjacent ranges plus whether the finder had to guess.
///
/// `conservative` means part of the file was malformed, truncated or over a limit, and the spans
/// then cover whole metadata containers (an APP1 segment, a chunk, an item, a box to its end)
/// rather than just the location values. The spans are still exactly what to zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    spans: Vec<Range>,
    conservative: bool,
}

impl Ranges {
    /// No location data: the file may be served unchanged (and by passthrough).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn spans(&self) -> &[Range] {
        &self.spans
    }

    pub fn is_conservative(&self) -> bool {
        self.conservative
    }

    /// Bytes that a redacted reader sees as zeros.
    pub fn total_bytes(&self) -> u64 {
        self.spans.iter().map(|r| r.end - r.start).sum()
    }

    /// Heap memory held, for the cache's budget.
    pub fn heap_bytes(&self) -> usize {
        self.spans.capacity() * std::mem::size_of::<Range>()
    }

    /// Whether the read `[offset, offset + len)` touches a span.
    pub fn overlaps(&self, offset: u64, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let end = offset.saturating_add(len);
        let i = self.spans.partition_point(|r| r.end <= offset);
        self.spans.get(i).is_some_and(|r| r.start < end)
    }

    pub(crate) fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        self.spans.push(Range { start, end });
        if self.spans.len() > MAX_SPANS {
            self.normalize();
            if self.spans.len() > MAX_SPANS / 2 {
                let first = self.spans[0].start;
                let last = self.spans[self.spans.len() - 1].end;
                self.spans = vec![Range {
                    start: first,
                    end: last,
                }];
                self.conservative = true;
            }
        }
    }

    pub(crate) fn mark_conservative(&mut self) {
        self.conservative = true;
    }

    /// Adds `other`'s spans (already absolute) and its flag.
    pub(crate) fn absorb(&mut self, other: Ranges) {
        self.conservative |= other.conservative;
        for r in other.spans {
            self.add(r.start, r.end);
        }
    }

    /// Sorts and merges overlapping or touching spans.
    pub(crate) fn normalize(&mut self) {
        self.spans.sort_unstable();
        let mut merged: Vec<Range> = Vec::with_capacity(self.spans.len());
        for r in self.spans.drain(..) {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        merged.shrink_to_fit();
        self.spans = merged;
    }

    /// Clips every span to `[0, size)`.
    pub(crate) fn clip(&mut self, size: u64) {
        self.spans.retain_mut(|r| {
            r.end = r.end.min(size);
            r.start < r.end
        });
    }
}

/// Zeroes the bytes of `buf`, read from the file at `file_offset`, that fall in `ranges`;
/// returns how many it zeroed.
pub fn zero_ranges(buf: &mut [u8], file_offset: u64, ranges: &Ranges) -> usize {
    let buf_end = file_offset.saturating_add(buf.len() as u64);
    let first = ranges.spans.partition_point(|r| r.end <= file_offset);
    let mut zeroed = 0;
    for r in &ranges.spans[first..] {
        if r.start >= buf_end {
            break;
        }
        let from = (r.start.max(file_offset) - file_offset) as usize;
        let to = (r.end.min(buf_end) - file_offset) as usize;
        buf[from..to].fill(0);
        zeroed += to - from;
    }
    zeroed
}

/// A logical byte string made of file pieces `(offset, len)` in order (an item with several
/// extents, or one contiguous blob), to map ranges found in the string back to the file.
#[derive(Debug, Default)]
pub(crate) struct Pieces(pub Vec<(u64, u64)>);

impl Pieces {
    pub(crate) fn one(offset: u64, len: u64) -> Self {
        Pieces(vec![(offset, len)])
    }

    pub(crate) fn len(&self) -> u64 {
        self.0.iter().map(|p| p.1).sum()
    }

    /// The logical string without its first `n` bytes.
    pub(crate) fn skip(&self, mut n: u64) -> Pieces {
        let mut v = Vec::new();
        for &(off, len) in &self.0 {
            if n >= len {
                n -= len;
            } else {
                v.push((off + n, len - n));
                n = 0;
            }
        }
        Pieces(v)
    }

    /// The first `n` bytes of the logical string (fewer if it is shorter).
    pub(crate) fn take(&self, mut n: u64) -> Pieces {
        let mut v = Vec::new();
        for &(off, len) in &self.0 {
            if n == 0 {
                break;
            }
            v.push((off, len.min(n)));
            n -= len.min(n);
        }
        Pieces(v)
    }

    /// The pieces as absolute `(start, end)` spans.
    pub(crate) fn spans(&self) -> Vec<(u64, u64)> {
        self.0
            .iter()
            .map(|&(o, l)| (o, o.saturating_add(l)))
            .collect()
    }

    /// Adds the file spans of the logical range `[start, end)` to `out`.
    pub(crate) fn map_into(&self, start: u64, end: u64, out: &mut Ranges) {
        let mut logical = 0u64;
        for &(off, len) in &self.0 {
            let (lo, hi) = (start.max(logical), end.min(logical + len));
            if lo < hi {
                out.add(off + (lo - logical), off + (hi - logical));
            }
            logical += len;
            if logical >= end {
                break;
            }
        }
    }

    /// Maps all of `found` (relative to the logical string at `base`) into `out`.
    pub(crate) fn map_all(&self, found: &Ranges, base: u64, out: &mut Ranges) {
        if found.conservative {
            out.mark_conservative();
        }
        for r in found.spans() {
            self.map_into(base + r.start, base + r.end, out);
        }
    }

    /// The file offset of logical `[start, start + len)` if it lies in one piece.
    pub(crate) fn contiguous(&self, start: u64, len: u64) -> Option<u64> {
        let mut logical = 0u64;
        for &(off, plen) in &self.0 {
            if start >= logical && start.checked_add(len)? <= logical + plen {
                return Some(off + (start - logical));
            }
            logical += plen;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(spans: &[(u64, u64)]) -> Ranges {
        let mut r = Ranges::default();
        for &(s, e) in spans {
            r.add(s, e);
        }
        r.normalize();
        r
    }

    #[test]
    fn normalize_merges_overlapping_and_touching() {
        let r = ranges(&[(10, 20), (0, 5), (15, 30), (30, 31), (40, 40)]);
        assert_eq!(
            r.spans(),
            &[Range { start: 0, end: 5 }, Range { start: 10, end: 31 }]
        );
        assert_eq!(r.total_bytes(), 26);
    }

    #[test]
    fn zero_ranges_zeroes_only_inside() {
        let r = ranges(&[(2, 4), (6, 7), (9, 100)]);
        for off in 0..12u64 {
            for len in 0..12usize {
                let mut buf = vec![0xAAu8; len];
                let n = zero_ranges(&mut buf, off, &r);
                for (i, b) in buf.iter().enumerate() {
                    let pos = off + i as u64;
                    let inside = r.spans().iter().any(|s| s.start <= pos && pos < s.end);
                    assert_eq!(*b == 0, inside, "off {off} len {len} pos {pos}");
                }
                assert_eq!(n, buf.iter().filter(|b| **b == 0).count());
                assert_eq!(r.overlaps(off, len as u64), n > 0);
            }
        }
    }

    #[test]
    fn too_many_spans_collapse_conservatively() {
        let mut r = Ranges::default();
        for i in 0..10_000u64 {
            r.add(i * 10, i * 10 + 1);
        }
        r.normalize();
        assert!(r.is_conservative());
        assert!(r.spans().len() <= MAX_SPANS);
        for i in 0..10_000u64 {
            assert!(r.overlaps(i * 10, 1), "span {i} lost");
        }
    }

    #[test]
    fn pieces_map_across_extents() {
        let p = Pieces(vec![(100, 10), (500, 10), (50, 5)]);
        let mut out = Ranges::default();
        p.map_into(8, 22, &mut out);
        out.normalize();
        assert_eq!(
            out.spans(),
            &[
                Range { start: 50, end: 52 },
                Range {
                    start: 108,
                    end: 110
                },
                Range {
                    start: 500,
                    end: 510
                }
            ]
        );
        assert_eq!(p.contiguous(10, 10), Some(500));
        assert_eq!(p.contiguous(8, 4), None);
    }
}
