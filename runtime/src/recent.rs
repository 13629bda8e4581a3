//! A few recently made values, newest first: the per-thread caches behind
//! values derived from request data that recurs from request to request
//! (routes, host names, model names, authorities), so that a repeat costs
//! a comparison instead of a validation and an allocation.

/// Up to `N` values, newest first.
#[derive(Debug)]
pub(crate) struct Recent<T, const N: usize>([Option<T>; N]);

impl<T: Clone, const N: usize> Recent<T, N> {
    /// An empty list.
    pub(crate) const fn new() -> Recent<T, N> {
        Recent([const { None }; N])
    }

    /// The newest kept value that `matches`; otherwise the value `make`
    /// builds, kept as the newest (the oldest making room) when `keep`
    /// accepts it.
    #[inline]
    pub(crate) fn find_or_make(
        &mut self,
        matches: impl Fn(&T) -> bool,
        make: impl FnOnce() -> Option<T>,
        keep: impl FnOnce(&T) -> bool,
    ) -> Option<T> {
        if let Some(seen) = self.0.iter().flatten().find(|seen| matches(seen)) {
            return Some(seen.clone());
        }
        let made = make()?;
        if keep(&made) {
            self.0.rotate_right(1);
            self.0[0] = Some(made.clone());
        }
        Some(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_repeat_is_found_without_making_it_again() {
        let mut recent: Recent<String, 2> = Recent::new();
        let made = Cell::new(0);
        let make = |value: &str| {
            made.set(made.get() + 1);
            Some(value.to_owned())
        };
        for _ in 0..3 {
            let found = recent.find_or_make(|seen| seen == "a", || make("a"), |_| true);
            assert_eq!(found.as_deref(), Some("a"));
        }
        assert_eq!(made.get(), 1);
    }

    #[test]
    fn the_oldest_value_makes_room_and_rejected_values_are_not_kept() {
        let mut recent: Recent<String, 2> = Recent::new();
        let mut get = |value: &'static str, keep: bool| {
            let mut made = false;
            let found = recent.find_or_make(
                |seen| seen == value,
                || {
                    made = true;
                    Some(value.to_owned())
                },
                |_| keep,
            );
            assert_eq!(found.as_deref(), Some(value));
            made
        };
        assert!(get("a", true));
        assert!(get("b", true));
        assert!(get("c", true), "three values in a list of two");
        assert!(get("a", true), "the oldest, a, made room for c");
        assert!(!get("c", true));
        assert!(get("d", false));
        assert!(get("d", false), "d was not kept");
        assert!(!get("a", true));
    }

    #[test]
    fn nothing_is_kept_when_nothing_is_made() {
        let mut recent: Recent<String, 2> = Recent::new();
        assert_eq!(recent.find_or_make(|_| true, || None, |_| true), None);
        assert_eq!(
            recent.find_or_make(|_| true, || Some("x".to_owned()), |_| true),
            Some("x".to_owned())
        );
    }
}
