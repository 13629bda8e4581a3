//! `max-score-picker`: the candidate with the highest total score, ties
//! broken at random.

use rand::Rng;

/// Picks the highest-scoring candidate(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxScorePicker {
    /// How many endpoints to return (`maxNumOfEndpoints`, default 1).
    pub max_endpoints: usize,
}

impl Default for MaxScorePicker {
    fn default() -> MaxScorePicker {
        MaxScorePicker { max_endpoints: 1 }
    }
}

impl MaxScorePicker {
    /// Indices of the picked candidates, best first. Equal scores are
    /// ordered at random.
    pub fn pick(&self, totals: &[f64], rng: &mut impl Rng) -> Vec<usize> {
        if self.max_endpoints == 1 {
            return pick_one(totals, rng).into_iter().collect();
        }
        let mut keyed: Vec<(f64, u64, usize)> = totals
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, rng.random::<u64>(), i))
            .collect();
        keyed.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        keyed
            .into_iter()
            .take(self.max_endpoints)
            .map(|k| k.2)
            .collect()
    }
}

/// The index of a maximum, chosen uniformly among ties (reservoir sampling).
fn pick_one(totals: &[f64], rng: &mut impl Rng) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    let mut ties = 0u32;
    for (i, &score) in totals.iter().enumerate() {
        match best {
            Some((b, _)) if score < b => {}
            Some((b, _)) if score == b => {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = Some((b, i));
                }
            }
            _ => {
                best = Some((score, i));
                ties = 1;
            }
        }
    }
    best.map(|b| b.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn picks_the_maximum() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            MaxScorePicker::default().pick(&[0.1, 0.9, 0.5], &mut rng),
            [1]
        );
        assert!(MaxScorePicker::default().pick(&[], &mut rng).is_empty());
        let top2 = MaxScorePicker { max_endpoints: 2 }.pick(&[0.1, 0.9, 0.5], &mut rng);
        assert_eq!(top2, [1, 2]);
    }

    #[test]
    fn ties_are_broken_at_random_over_all_tied() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            let i = MaxScorePicker::default().pick(&[1.0, 0.2, 1.0, 1.0], &mut rng)[0];
            seen[i] += 1;
        }
        assert_eq!(seen[1], 0);
        assert!(seen[0] > 0 && seen[2] > 0 && seen[3] > 0, "{seen:?}");
    }
}
