//! Sorted runs of pages (start, end): which pages were copied, written or
//! are tracked.

use crate::image::PAGE_SIZE;

/// Whether [start, end) lies inside one of `ranges` (sorted, disjoint):
/// what the trackers, `PageRuns` and pre-copy ask of their ranges.
pub fn ranges_cover(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    let i = ranges.partition_point(|r| r.1 <= start);
    ranges.get(i).is_some_and(|r| r.0 <= start && end <= r.1)
}

/// Adds the page at `addr` to `runs`, built in address order: it extends
/// the last run when it follows it.
pub fn push_page(runs: &mut Vec<(u64, u64)>, addr: u64) {
    match runs.last_mut() {
        Some(last) if last.1 == addr => last.1 += PAGE_SIZE,
        _ => runs.push((addr, addr + PAGE_SIZE)),
    }
}

/// A sorted set of page runs, for "was this page copied / written" checks.
#[derive(Debug, Default, Clone)]
pub struct PageRuns {
    runs: Vec<(u64, u64)>,
}

impl PageRuns {
    /// The empty set.
    pub const fn empty() -> Self {
        PageRuns { runs: Vec::new() }
    }

    /// Whether any page of [start, end) is in the set.
    pub fn intersects(&self, start: u64, end: u64) -> bool {
        let i = self.runs.partition_point(|r| r.1 <= start);
        self.runs.get(i).is_some_and(|r| r.0 < end)
    }

    /// Builds the set from runs (start, end) in any order.
    pub fn from_runs(mut runs: Vec<(u64, u64)>) -> Self {
        runs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
        for (s, e) in runs {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        PageRuns { runs: merged }
    }

    /// Adds runs (start, end) to the set.
    pub fn extend(&mut self, runs: Vec<(u64, u64)>) {
        let mut all = std::mem::take(&mut self.runs);
        all.extend(runs);
        *self = PageRuns::from_runs(all);
    }

    /// Whether the page at `addr` is in the set.
    pub fn contains(&self, addr: u64) -> bool {
        let i = self.runs.partition_point(|r| r.1 <= addr);
        self.runs.get(i).is_some_and(|r| r.0 <= addr)
    }

    /// Whether every page of [start, end) is in the set.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        ranges_cover(&self.runs, start, end)
    }

    /// The pieces of [start, end) outside the set, in address order.
    pub fn gaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = start;
        let first = self.runs.partition_point(|r| r.1 <= start);
        for &(s, e) in self.runs[first..].iter().take_while(|r| r.0 < end) {
            if s > at {
                gaps.push((at, s));
            }
            at = at.max(e);
        }
        if at < end {
            gaps.push((at, end));
        }
        gaps
    }

    /// The pieces of [start, end) inside the set, in address order.
    pub fn within(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let first = self.runs.partition_point(|r| r.1 <= start);
        self.runs[first..]
            .iter()
            .take_while(|r| r.0 < end)
            .map(|&(s, e)| (s.max(start), e.min(end)))
            .collect()
    }

    /// The runs (start, end), sorted and merged.
    pub fn runs(&self) -> &[(u64, u64)] {
        &self.runs
    }

    /// Number of pages in the set.
    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|r| (r.1 - r.0) / PAGE_SIZE).sum()
    }
}

#[cfg(test)]
mod tests {
    use crate::memory::runs::PageRuns;

    #[test]
    fn page_runs_merge_and_find() {
        let set = PageRuns::from_runs(vec![(0x3000, 0x5000), (0x1000, 0x2000), (0x2000, 0x3000)]);
        assert!(set.contains(0x1000) && set.contains(0x4000));
        assert!(!set.contains(0x5000) && !set.contains(0));
        assert_eq!(set.pages(), 4);
        assert!(set.covers(0x1000, 0x5000) && set.covers(0x2000, 0x3000));
        assert!(!set.covers(0x1000, 0x6000) && !set.covers(0, 0x2000));
        assert_eq!(set.gaps(0, 0x8000), vec![(0, 0x1000), (0x5000, 0x8000)]);
        assert_eq!(set.gaps(0x2000, 0x4000), vec![]);
        assert_eq!(set.gaps(0x4000, 0x6000), vec![(0x5000, 0x6000)]);
        assert_eq!(
            PageRuns::empty().gaps(0x1000, 0x3000),
            vec![(0x1000, 0x3000)]
        );
        let two = PageRuns::from_runs(vec![(0x1000, 0x3000), (0x5000, 0x8000)]);
        assert_eq!(
            two.within(0x2000, 0x6000),
            vec![(0x2000, 0x3000), (0x5000, 0x6000)]
        );
        assert_eq!(two.within(0x3000, 0x5000), vec![]);
    }
}
