//! Built-in real-world size priors of the classes `insert_objects` knows by name.
//!
//! Each number is a range `[a, b]` of typical adults as published (encyclopaedic species accounts,
//! breed standards), read as mean ± 2 standard deviations: `mean = (a + b) / 2`,
//! `std = (b − a) / 4` ([`from_range`]). Heights are at the shoulder (withers) for four-legged
//! animals and to the top of the head for upright ones (kangaroo); the box of an animal with its
//! head up reaches higher, which the placement stage accounts for. Lengths are head and body
//! without the tail. Body widths are rarely published: they are our estimates from body proportions
//! and say so in `source`. A scenario may override any number.

use crate::settings::Normal;

/// One class's size prior.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizePrior {
    /// Canonical name (lower case, `_` between words).
    pub name: &'static str,
    /// Other names that resolve to this prior.
    pub aliases: &'static [&'static str],
    /// Class written into annotations unless the scenario sets a label.
    pub label: &'static str,
    /// Published range of typical adults `[a, b]`, metres.
    pub height_range_m: [f64; 2],
    pub length_range_m: [f64; 2],
    pub width_range_m: [f64; 2],
    /// Where the numbers come from.
    pub source: &'static str,
}

impl SizePrior {
    pub fn height_m(&self) -> Normal {
        from_range(self.height_range_m)
    }
    pub fn length_m(&self) -> Normal {
        from_range(self.length_range_m)
    }
    pub fn width_m(&self) -> Normal {
        from_range(self.width_range_m)
    }
}

/// A published range `[a, b]` as a normal with `a` and `b` two standard deviations from the mean.
pub fn from_range([a, b]: [f64; 2]) -> Normal {
    Normal {
        mean: f64::midpoint(a, b),
        std: (b - a) / 4.0,
    }
}

/// Every built-in prior, by canonical name.
pub const PRIORS: &[SizePrior] = &[
    SizePrior {
        name: "bear",
        aliases: &["black_bear", "american_black_bear"],
        label: "animal",
        height_range_m: [0.70, 1.00],
        length_range_m: [1.20, 1.90],
        width_range_m: [0.50, 0.80],
        source: "American black bear: shoulder height 0.7-1.0 m, length 1.2-1.9 m (Macdonald, \
                 The Encyclopedia of Mammals, 2006, as quoted by the Illinois State Museum); \
                 width: estimate",
    },
    SizePrior {
        name: "cow",
        aliases: &["cattle"],
        label: "animal",
        height_range_m: [1.20, 1.65],
        length_range_m: [2.00, 2.60],
        width_range_m: [0.55, 0.80],
        source: "Cattle: height at the withers 1.40-1.65 m for dairy cows (Holstein Association USA \
                 stature scale, 55-65 in), down to about 1.2 m for smaller beef breeds; length \
                 (nose to tail base) and width: estimates from body proportions",
    },
    SizePrior {
        name: "deer",
        aliases: &[],
        label: "animal",
        height_range_m: [0.60, 1.05],
        length_range_m: [0.95, 2.10],
        width_range_m: [0.20, 0.45],
        source: "Deer in general: the union of the roe deer and white-tailed deer ranges (see \
                 `roe_deer`, `white_tailed_deer`), the deer most often met on European and North \
                 American roads",
    },
    SizePrior {
        name: "dog",
        aliases: &[],
        label: "animal",
        height_range_m: [0.40, 0.70],
        length_range_m: [0.60, 1.10],
        width_range_m: [0.20, 0.35],
        source: "Medium and large dogs: height at the withers 0.40-0.70 m (FCI breed standards, \
                 e.g. Border Collie about 0.53 m, Labrador Retriever 0.54-0.57 m, German Shepherd \
                 0.55-0.65 m); length and width: estimates from body proportions",
    },
    SizePrior {
        name: "fox",
        aliases: &["red_fox"],
        label: "animal",
        height_range_m: [0.35, 0.50],
        length_range_m: [0.45, 0.90],
        width_range_m: [0.12, 0.20],
        source: "Red fox: shoulder height 0.35-0.50 m, head and body 0.45-0.90 m without the \
                 0.30-0.55 m tail (Wikipedia, Red fox; species accounts); width: estimate",
    },
    SizePrior {
        name: "horse",
        aliases: &[],
        label: "animal",
        height_range_m: [1.42, 1.73],
        length_range_m: [2.20, 2.60],
        width_range_m: [0.50, 0.70],
        source: "Light (riding) horses: height at the withers 14 to 17 hands, 1.42-1.73 m \
                 (Wikipedia, Horse; Britannica, Horse); length (nose to tail base) and width: \
                 estimates from body proportions",
    },
    SizePrior {
        name: "kangaroo",
        aliases: &["red_kangaroo"],
        label: "animal",
        height_range_m: [1.20, 1.80],
        length_range_m: [0.85, 1.60],
        width_range_m: [0.30, 0.50],
        source: "Red kangaroo: upright height about 1.5 m on average, large males over 1.8 m; head \
                 and body 0.85-1.05 m (females) to 1.3-1.6 m (males) without the tail (Wikipedia, \
                 Red kangaroo); lower height bound and width: estimates",
    },
    SizePrior {
        name: "moose",
        aliases: &[],
        label: "animal",
        height_range_m: [1.40, 2.10],
        length_range_m: [2.40, 3.20],
        width_range_m: [0.60, 1.00],
        source: "Moose: shoulder height 1.4-2.1 m, head and body 2.4-3.2 m (Wikipedia, Moose); \
                 body width: estimate (a bull's antlers span a further 1.2-1.8 m)",
    },
    SizePrior {
        name: "roe_deer",
        aliases: &["roe"],
        label: "animal",
        height_range_m: [0.60, 0.75],
        length_range_m: [0.95, 1.35],
        width_range_m: [0.20, 0.30],
        source: "Roe deer: shoulder height 0.60-0.75 m (Wikipedia, Roe deer, gives 0.63-0.67 m; UK \
                 deer-management species notes 0.60-0.75 m), body length 0.95-1.35 m (Wikipedia); \
                 width: estimate",
    },
    SizePrior {
        name: "sheep",
        aliases: &[],
        label: "animal",
        height_range_m: [0.60, 0.90],
        length_range_m: [1.00, 1.40],
        width_range_m: [0.30, 0.50],
        source: "Sheep: height at the withers 0.60-0.90 m across common breeds (breed descriptions, \
                 e.g. 0.65-0.80 m for small breeds, about 0.85-0.90 m for Bluefaced Leicester); \
                 body length about 1.27 m on average (Dimensions.com, Sheep); width: estimate",
    },
    SizePrior {
        name: "white_tailed_deer",
        aliases: &["whitetail", "white_tail_deer"],
        label: "animal",
        height_range_m: [0.80, 1.05],
        length_range_m: [1.50, 2.10],
        width_range_m: [0.30, 0.45],
        source: "White-tailed deer: shoulder height 0.81-0.91 m (Dimensions.com) to 0.91-1.02 m for \
                 mature does (US wildlife agency figures of 36-40 in), nose to tail 1.52-2.13 m; \
                 width: estimate",
    },
    SizePrior {
        name: "wild_boar",
        aliases: &["boar"],
        label: "animal",
        height_range_m: [0.75, 1.00],
        length_range_m: [1.20, 1.80],
        width_range_m: [0.35, 0.55],
        source: "Wild boar: shoulder height 0.75-0.90 m (females) to 0.85-1.00 m (males), \
                 Dimensions.com 0.76-0.91 m; head and body 1.2-1.8 m (Wikipedia, Wild boar); \
                 width: estimate",
    },
];

/// Lower case, with spaces and hyphens as `_`: `Wild Boar`, `wild-boar` and `wild_boar` match.
pub fn normalise(name: &str) -> String {
    name.trim()
        .to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// The prior of a class name or alias.
pub fn lookup(name: &str) -> Option<&'static SizePrior> {
    let n = normalise(name);
    PRIORS
        .iter()
        .find(|p| p.name == n || p.aliases.contains(&n.as_str()))
}

/// Canonical names, sorted.
pub fn known_names() -> Vec<&'static str> {
    let mut names: Vec<_> = PRIORS.iter().map(|p| p.name).collect();
    names.sort_unstable();
    names
}

/// The known names (or aliases) closest to `name`, within two edits, for "did you mean".
pub fn suggest(name: &str) -> Vec<&'static str> {
    let n = normalise(name);
    let scored: Vec<(usize, &'static str)> = PRIORS
        .iter()
        .flat_map(|p| std::iter::once(p.name).chain(p.aliases.iter().copied()))
        .map(|candidate| (edit_distance(&n, candidate), candidate))
        .filter(|&(d, _)| d <= 2)
        .collect();
    let best = scored.iter().map(|&(d, _)| d).min();
    let mut names: Vec<_> = scored
        .into_iter()
        .filter(|&(d, _)| Some(d) == best)
        .map(|(_, c)| c)
        .collect();
    names.sort_unstable();
    names
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_and_resolve() {
        assert_eq!(lookup("Wild Boar").map(|p| p.name), Some("wild_boar"));
        assert_eq!(lookup("wild-boar").map(|p| p.name), Some("wild_boar"));
        assert_eq!(lookup("cattle").map(|p| p.name), Some("cow"));
        assert!(lookup("unicorn").is_none());
        assert_eq!(suggest("dear"), ["bear", "deer"]);
        assert_eq!(suggest("mose"), ["moose"]);
        assert!(suggest("unicorn").is_empty());
    }

    #[test]
    fn ranges_are_sane() {
        for p in PRIORS {
            for [a, b] in [p.height_range_m, p.length_range_m, p.width_range_m] {
                assert!(0.0 < a && a < b && b < 4.0, "{}", p.name);
            }
            assert_eq!(p.name, normalise(p.name));
            assert!(p.aliases.iter().all(|a| *a == normalise(a)), "{}", p.name);
        }
        let names = known_names();
        let mut dedup = names.clone();
        dedup.dedup();
        assert_eq!(names, dedup);
    }
}
