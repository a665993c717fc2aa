//! One user's entry in the recommendation index, packed into four allocations however
//! many lists it holds: the text (user id and request ids), the list headers, the items
//! of all lists, and the clicks. A change rebuilds the user's slices (at most `keep`
//! lists, so a few KiB), which keeps every slice exactly as long as its contents.

use std::hash::{BuildHasher, RandomState};

use super::interner::Sym;

/// A 128-bit keyed fingerprint of an event id or a request id.
///
/// Two SipHash-1-3 values of the text under one random per-process key, each behind its
/// own one-byte prefix. SipHash is a pseudorandom function under a secret key, so two
/// different texts share a fingerprint with probability 2⁻¹²⁸, and a sender who does not
/// know the key cannot aim for one. The index compares a fingerprint only with those of
/// one user (at most `keep` lists and 1024 clicks), so even 10¹⁵ comparisons over a
/// server's life leave the chance of one wrong answer below 10⁻²³.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Fingerprint([u64; 2]);

/// Makes [`Fingerprint`]s with this process's key.
#[derive(Debug, Default)]
pub(super) struct Fingerprinter(RandomState);

impl Fingerprinter {
    /// The fingerprint of `text`.
    pub(super) fn of(&self, text: &str) -> Fingerprint {
        Fingerprint([self.0.hash_one((0u8, text)), self.0.hash_one((1u8, text))])
    }
}

/// One recommended item: 16 bytes with the score kept exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Item {
    score: f64,
    rank: i32,
    /// The item id's symbol in the low 30 bits; bit 31: has a score; bit 30: has a rank.
    packed: u32,
}

const HAS_SCORE: u32 = 1 << 31;
const HAS_RANK: u32 = 1 << 30;

impl Item {
    pub(super) fn new(item: Sym, score: Option<f64>, rank: Option<i32>) -> Item {
        let mut packed = item.raw();
        if score.is_some() {
            packed |= HAS_SCORE;
        }
        if rank.is_some() {
            packed |= HAS_RANK;
        }
        Item {
            score: score.unwrap_or(0.0),
            rank: rank.unwrap_or(0),
            packed,
        }
    }

    pub(super) fn item(&self) -> Option<Sym> {
        Sym::from_raw(self.packed & Sym::MAX)
    }

    pub(super) fn score(&self) -> Option<f64> {
        (self.packed & HAS_SCORE != 0).then_some(self.score)
    }

    pub(super) fn rank(&self) -> Option<i32> {
        (self.packed & HAS_RANK != 0).then_some(self.rank)
    }
}

/// Request-id length of a list that has none.
const NO_REQUEST: u32 = u32::MAX;

/// One served list's header; its items and request id follow those of the lists before it
/// in [`User::items`] and [`User::text`].
#[derive(Debug, Clone, Copy)]
struct List {
    event: Fingerprint,
    micros: i64,
    model: Option<Sym>,
    surface: Option<Sym>,
    items: u32,
    /// Bytes of the request id in the text, or [`NO_REQUEST`].
    request: u32,
}

/// A served list as the index stores it.
#[derive(Debug)]
pub(super) struct NewList<'a> {
    pub event: Fingerprint,
    pub micros: i64,
    pub model: Option<Sym>,
    pub surface: Option<Sym>,
    pub request: Option<&'a str>,
    pub items: Vec<Item>,
}

/// One served list as a lookup reads it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ListView<'a> {
    pub micros: i64,
    pub model: Option<Sym>,
    pub surface: Option<Sym>,
    pub request: Option<&'a str>,
    pub items: &'a [Item],
}

/// A click on `item` in the request with fingerprint `request` (that of `""` when the
/// click named no request), seen last at `micros`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Click {
    pub item: Sym,
    pub request: Fingerprint,
    pub micros: i64,
}

impl Click {
    fn key(&self) -> (Sym, Fingerprint) {
        (self.item, self.request)
    }
}

/// Clicks kept per user; the set is emptied when it is full (as before the index was
/// packed: a user with that many clicks is a crawler or a test).
pub(super) const CLICKS_KEPT: usize = 1024;

/// What [`User::insert_list`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inserted {
    /// The list is one of the user's newest `keep` now.
    Added,
    /// A list with the same event id is already kept (a resend).
    Duplicate,
    /// `keep` newer lists are kept already.
    TooOld,
}

/// One user's newest served lists (newest first) and clicks.
#[derive(Debug)]
pub(super) struct User {
    /// The user id, then the request ids of the lists in order.
    text: Box<str>,
    user_len: u32,
    lists: Box<[List]>,
    items: Box<[Item]>,
    /// Sorted by `(item, request)`, one per pair.
    clicks: Box<[Click]>,
}

impl User {
    /// A user with nothing kept yet. (A user id longer than 4 GiB cannot reach here:
    /// Kafka messages are far smaller.)
    pub(super) fn new(id: &str) -> User {
        User {
            text: id.into(),
            user_len: u32::try_from(id.len()).unwrap_or(u32::MAX),
            lists: Box::default(),
            items: Box::default(),
            clicks: Box::default(),
        }
    }

    /// The user id.
    pub(super) fn id(&self) -> &str {
        self.text
            .get(..self.user_len as usize)
            .unwrap_or(&self.text)
    }

    /// No lists and no clicks: the user can go.
    pub(super) fn is_empty(&self) -> bool {
        self.lists.is_empty() && self.clicks.is_empty()
    }

    /// Lists kept.
    pub(super) fn list_count(&self) -> usize {
        self.lists.len()
    }

    /// Clicks kept.
    pub(super) fn click_count(&self) -> usize {
        self.clicks.len()
    }

    /// Estimated bytes of the user's allocations (not counting its slot in the table).
    pub(super) fn heap_bytes(&self) -> usize {
        // Each allocation has about 16 bytes of allocator overhead.
        let boxes = [
            !self.text.is_empty(),
            !self.lists.is_empty(),
            !self.items.is_empty(),
            !self.clicks.is_empty(),
        ]
        .iter()
        .filter(|&&b| b)
        .count();
        self.text.len()
            + std::mem::size_of_val::<[List]>(&self.lists)
            + std::mem::size_of_val::<[Item]>(&self.items)
            + std::mem::size_of_val::<[Click]>(&self.clicks)
            + 16 * boxes
    }

    /// The kept lists, newest first.
    pub(super) fn lists(&self) -> impl Iterator<Item = ListView<'_>> {
        let mut item_at = 0usize;
        let mut text_at = self.user_len as usize;
        self.lists.iter().map(move |list| {
            let items = self
                .items
                .get(item_at..item_at + list.items as usize)
                .unwrap_or_default();
            item_at += list.items as usize;
            let request = (list.request != NO_REQUEST).then(|| {
                let end = text_at + list.request as usize;
                let r = self.text.get(text_at..end).unwrap_or_default();
                text_at = end;
                r
            });
            ListView {
                micros: list.micros,
                model: list.model,
                surface: list.surface,
                request,
                items,
            }
        })
    }

    /// Whether `item` was clicked in the request with fingerprint `request`, or in a
    /// click that named no request (`none`, the fingerprint of `""`).
    pub(super) fn clicked(&self, item: Sym, request: Fingerprint, none: Fingerprint) -> bool {
        let has = |request| {
            self.clicks
                .binary_search_by(|c| c.key().cmp(&(item, request)))
                .is_ok()
        };
        has(request) || has(none)
    }

    /// Keeps `list` if it is one of the newest `keep` (newest first; a list as new as
    /// kept ones goes after them) and no kept list has its event id.
    pub(super) fn insert_list(&mut self, list: NewList<'_>, keep: usize) -> Inserted {
        if self.lists.iter().any(|l| l.event == list.event) {
            return Inserted::Duplicate;
        }
        let at = self
            .lists
            .iter()
            .position(|l| l.micros < list.micros)
            .unwrap_or(self.lists.len());
        if at >= keep {
            return Inserted::TooOld;
        }
        let kept = (self.lists.len() + 1).min(keep);
        let header = List {
            event: list.event,
            micros: list.micros,
            model: list.model,
            surface: list.surface,
            items: u32::try_from(list.items.len()).unwrap_or(u32::MAX),
            request: list
                .request
                .and_then(|r| u32::try_from(r.len()).ok())
                .unwrap_or(NO_REQUEST),
        };
        let view = ListView {
            micros: list.micros,
            model: list.model,
            surface: list.surface,
            request: list.request,
            items: &list.items,
        };
        let old: Vec<(List, ListView<'_>)> = self.lists.iter().copied().zip(self.lists()).collect();
        let order: Vec<(List, ListView<'_>)> = old[..at]
            .iter()
            .copied()
            .chain(std::iter::once((header, view)))
            .chain(old[at..].iter().copied())
            .take(kept)
            .collect();
        let items_len = order.iter().map(|(h, _)| h.items as usize).sum();
        let text_len = order
            .iter()
            .filter(|(h, _)| h.request != NO_REQUEST)
            .map(|(h, _)| h.request as usize)
            .sum::<usize>()
            + self.user_len as usize;
        let mut items = Vec::with_capacity(items_len);
        let mut text = String::with_capacity(text_len);
        text.push_str(self.id());
        let mut lists = Vec::with_capacity(kept);
        for (header, view) in order {
            items.extend_from_slice(
                view.items
                    .get(..header.items as usize)
                    .unwrap_or(view.items),
            );
            if header.request != NO_REQUEST {
                text.push_str(view.request.unwrap_or_default());
            }
            lists.push(header);
        }
        self.lists = lists.into_boxed_slice();
        self.items = items.into_boxed_slice();
        self.text = text.into_boxed_str();
        Inserted::Added
    }

    /// Records a click (the newest time of the same click is kept).
    pub(super) fn insert_click(&mut self, click: Click) {
        match self.clicks.binary_search_by(|c| c.key().cmp(&click.key())) {
            Ok(i) => {
                if let Some(c) = self.clicks.get_mut(i) {
                    c.micros = c.micros.max(click.micros);
                }
            }
            Err(i) => {
                let mut clicks = if self.clicks.len() >= CLICKS_KEPT {
                    Vec::with_capacity(1)
                } else {
                    let mut v = Vec::with_capacity(self.clicks.len() + 1);
                    v.extend_from_slice(&self.clicks[..i]);
                    v.push(click);
                    v.extend_from_slice(&self.clicks[i..]);
                    v
                };
                if clicks.is_empty() {
                    clicks.push(click);
                }
                self.clicks = clicks.into_boxed_slice();
            }
        }
    }

    /// Drops the lists and clicks older than `cutoff` (micros); whether any went.
    pub(super) fn evict_before(&mut self, cutoff: i64) -> bool {
        let lists = self
            .lists
            .iter()
            .position(|l| l.micros < cutoff)
            .unwrap_or(self.lists.len());
        let clicks_old = self.clicks.iter().filter(|c| c.micros < cutoff).count();
        if lists == self.lists.len() && clicks_old == 0 {
            return false;
        }
        if lists < self.lists.len() {
            self.truncate_lists(lists);
        }
        if clicks_old > 0 {
            self.clicks = self
                .clicks
                .iter()
                .filter(|c| c.micros >= cutoff)
                .copied()
                .collect();
        }
        true
    }

    /// Keeps the newest `n` lists.
    fn truncate_lists(&mut self, n: usize) {
        let (items, text) = self
            .lists()
            .take(n)
            .fold((0usize, self.user_len as usize), |(items, text), v| {
                (items + v.items.len(), text + v.request.map_or(0, str::len))
            });
        self.lists = self.lists.iter().take(n).copied().collect();
        self.items = self.items.iter().take(items).copied().collect();
        self.text = self.text.get(..text).unwrap_or(&self.text).into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(raw: u32) -> Sym {
        Sym::from_raw(raw).unwrap()
    }

    fn list<'a>(f: &Fingerprinter, id: &str, micros: i64, request: Option<&'a str>) -> NewList<'a> {
        NewList {
            event: f.of(id),
            micros,
            model: Some(sym(1)),
            surface: None,
            request,
            items: vec![Item::new(sym(2), Some(micros as f64), None)],
        }
    }

    /// `(micros, request, item scores)` of each kept list.
    fn lists(user: &User) -> Vec<(i64, Option<String>, Vec<Option<f64>>)> {
        user.lists()
            .map(|l| {
                (
                    l.micros,
                    l.request.map(String::from),
                    l.items.iter().map(Item::score).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn items_keep_their_values_and_nulls_in_16_bytes() {
        assert_eq!(std::mem::size_of::<Item>(), 16);
        assert_eq!(std::mem::size_of::<List>(), 40);
        assert_eq!(std::mem::size_of::<Click>(), 32);
        let max = sym(Sym::MAX);
        for (score, rank) in [
            (Some(0.1), Some(-3)),
            (None, Some(0)),
            (Some(f64::MIN_POSITIVE), None),
            (None, None),
        ] {
            let item = Item::new(max, score, rank);
            assert_eq!(
                (item.item(), item.score(), item.rank()),
                (Some(max), score, rank)
            );
        }
    }

    #[test]
    fn texts_and_items_stay_with_their_lists_through_inserts_and_evictions() {
        let f = Fingerprinter::default();
        let mut user = User::new("user-1");
        assert_eq!(
            user.insert_list(list(&f, "b", 20, None), 3),
            Inserted::Added
        );
        assert_eq!(
            user.insert_list(list(&f, "a", 10, Some("req-a")), 3),
            Inserted::Added
        );
        assert_eq!(
            user.insert_list(list(&f, "d", 40, Some("req-d")), 3),
            Inserted::Added
        );
        assert_eq!(
            user.insert_list(list(&f, "c", 30, Some("r-c")), 3),
            Inserted::Added
        );
        assert_eq!(
            user.insert_list(list(&f, "a", 10, Some("req-a")), 3),
            Inserted::TooOld
        );
        assert_eq!(
            user.insert_list(list(&f, "c", 30, Some("r-c")), 3),
            Inserted::Duplicate
        );
        assert_eq!(
            lists(&user),
            [
                (40, Some("req-d".into()), vec![Some(40.0)]),
                (30, Some("r-c".into()), vec![Some(30.0)]),
                (20, None, vec![Some(20.0)]),
            ]
        );
        assert_eq!(user.id(), "user-1");
        assert!(user.evict_before(25));
        assert_eq!(user.list_count(), 2);
        assert_eq!(user.id(), "user-1");
        assert_eq!(lists(&user)[1], (30, Some("r-c".into()), vec![Some(30.0)]));
        assert!(!user.evict_before(25), "nothing more to drop");
        assert!(user.evict_before(i64::MAX));
        assert!(user.is_empty());
        assert_eq!(user.id(), "user-1");
    }

    #[test]
    fn clicks_match_their_request_or_none() {
        let f = Fingerprinter::default();
        let none = f.of("");
        let mut user = User::new("u");
        user.insert_click(Click {
            item: sym(1),
            request: f.of("req-1"),
            micros: 5,
        });
        user.insert_click(Click {
            item: sym(2),
            request: none,
            micros: 5,
        });
        user.insert_click(Click {
            item: sym(1),
            request: f.of("req-1"),
            micros: 9,
        });
        assert_eq!(user.click_count(), 2);
        assert!(user.clicked(sym(1), f.of("req-1"), none));
        assert!(!user.clicked(sym(1), f.of("req-2"), none));
        assert!(user.clicked(sym(2), f.of("req-2"), none));
        assert!(!user.clicked(sym(3), f.of("req-1"), none));
        // The repeated click's newest time counts for its age.
        assert!(user.evict_before(6));
        assert!(user.clicked(sym(1), f.of("req-1"), none));
        assert!(!user.clicked(sym(2), f.of("req-2"), none));
        // A full set starts over.
        for i in 0..CLICKS_KEPT as u32 {
            user.insert_click(Click {
                item: sym(100 + i),
                request: none,
                micros: 10,
            });
        }
        assert_eq!(user.click_count(), 1);
    }
}
