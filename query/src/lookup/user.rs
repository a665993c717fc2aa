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

/// One recommended item as a served list carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct NewItem {
    pub item: Sym,
    pub score: Option<f64>,
    pub rank: Option<i32>,
}

/// One slot of a user's items: 12 bytes. Either a recommended item (its symbol and
/// flags, and its score exactly), or, after the items of a list whose ranks are not
/// their positions, three of those ranks. Rankers send rank = position (1, 2, …), so
/// the ranks usually cost nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Item([u32; 3]);

const HAS_SCORE: u32 = 1 << 31;
const HAS_RANK: u32 = 1 << 30;

impl Item {
    fn new(item: &NewItem) -> Item {
        let mut packed = item.item.raw();
        if item.score.is_some() {
            packed |= HAS_SCORE;
        }
        if item.rank.is_some() {
            packed |= HAS_RANK;
        }
        let score = item.score.unwrap_or(0.0).to_bits();
        Item([packed, score as u32, (score >> 32) as u32])
    }

    /// A slot holding up to three ranks.
    fn ranks(ranks: &[Option<i32>]) -> Item {
        let mut words = [0u32; 3];
        for (word, rank) in words.iter_mut().zip(ranks) {
            *word = u32::from_ne_bytes(rank.unwrap_or(0).to_ne_bytes());
        }
        Item(words)
    }

    /// The `i`th rank (0 ..= 2) of a slot made by [`Item::ranks`].
    fn rank_at(&self, i: usize) -> i32 {
        i32::from_ne_bytes(self.0.get(i).copied().unwrap_or(0).to_ne_bytes())
    }

    pub(super) fn item(&self) -> Option<Sym> {
        Sym::from_raw(self.0[0] & Sym::MAX)
    }

    pub(super) fn score(&self) -> Option<f64> {
        (self.0[0] & HAS_SCORE != 0)
            .then(|| f64::from_bits(u64::from(self.0[1]) | (u64::from(self.0[2]) << 32)))
    }

    fn has_rank(&self) -> bool {
        self.0[0] & HAS_RANK != 0
    }
}

/// The slots a list of `items` items takes: the items, then their ranks three to a slot
/// when they are not the positions.
fn slots(items: u32) -> usize {
    let (n, explicit) = (items & !EXPLICIT_RANKS, items & EXPLICIT_RANKS != 0);
    n as usize + if explicit { n.div_ceil(3) as usize } else { 0 }
}

/// In [`List::items`]: the list's ranks follow its items.
const EXPLICIT_RANKS: u32 = 1 << 31;

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
    /// Items in the list, with [`EXPLICIT_RANKS`] when their ranks follow them.
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
    pub items: Vec<NewItem>,
}

/// One served list as a lookup reads it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ListView<'a> {
    pub micros: i64,
    pub model: Option<Sym>,
    pub surface: Option<Sym>,
    pub request: Option<&'a str>,
    /// The items' slots, then (when not the positions) their ranks' slots.
    slots: &'a [Item],
    items: usize,
}

impl<'a> ListView<'a> {
    /// The items in served order, each with its rank.
    pub(super) fn items(&self) -> impl Iterator<Item = (Item, Option<i32>)> + 'a {
        let (items, ranks) = self.slots.split_at(self.items.min(self.slots.len()));
        items.iter().enumerate().map(move |(i, item)| {
            let rank = item.has_rank().then(|| match ranks.get(i / 3) {
                Some(slot) => slot.rank_at(i % 3),
                None => i32::try_from(i + 1).unwrap_or(i32::MAX),
            });
            (*item, rank)
        })
    }
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
            let taken = slots(list.items);
            let items = self.items.get(item_at..item_at + taken).unwrap_or_default();
            item_at += taken;
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
                slots: items,
                items: (list.items & !EXPLICIT_RANKS) as usize,
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
        // A list longer than 2³¹ items cannot reach here: Kafka messages are far smaller.
        let count = u32::try_from(list.items.len())
            .unwrap_or(u32::MAX)
            .min(!EXPLICIT_RANKS);
        let new_items = list.items.get(..count as usize).unwrap_or(&list.items);
        let explicit = new_items
            .iter()
            .zip(1..)
            .any(|(item, position)| item.rank.is_some_and(|rank| rank != position));
        let mut encoded: Vec<Item> = new_items.iter().map(Item::new).collect();
        if explicit {
            let ranks: Vec<Option<i32>> = new_items.iter().map(|i| i.rank).collect();
            encoded.extend(ranks.chunks(3).map(Item::ranks));
        }
        let header = List {
            event: list.event,
            micros: list.micros,
            model: list.model,
            surface: list.surface,
            items: count | if explicit { EXPLICIT_RANKS } else { 0 },
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
            slots: &encoded,
            items: count as usize,
        };
        let old: Vec<(List, ListView<'_>)> = self.lists.iter().copied().zip(self.lists()).collect();
        let order: Vec<(List, ListView<'_>)> = old[..at]
            .iter()
            .copied()
            .chain(std::iter::once((header, view)))
            .chain(old[at..].iter().copied())
            .take(kept)
            .collect();
        let items_len = order.iter().map(|(h, _)| slots(h.items)).sum();
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
            items.extend_from_slice(view.slots);
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
                (items + v.slots.len(), text + v.request.map_or(0, str::len))
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
            items: vec![NewItem {
                item: sym(2),
                score: Some(micros as f64),
                rank: None,
            }],
        }
    }

    /// `(micros, request, item scores)` of each kept list.
    fn lists(user: &User) -> Vec<(i64, Option<String>, Vec<Option<f64>>)> {
        user.lists()
            .map(|l| {
                (
                    l.micros,
                    l.request.map(String::from),
                    l.items().map(|(item, _)| item.score()).collect(),
                )
            })
            .collect()
    }

    /// `(item, score, rank)` of the items of each kept list.
    type Items = Vec<Vec<(Option<Sym>, Option<f64>, Option<i32>)>>;

    fn items(user: &User) -> Items {
        user.lists()
            .map(|l| {
                l.items()
                    .map(|(item, rank)| (item.item(), item.score(), rank))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn items_keep_their_values_ranks_and_nulls_in_12_bytes() {
        assert_eq!(std::mem::size_of::<Item>(), 12);
        assert_eq!(std::mem::size_of::<List>(), 40);
        assert_eq!(std::mem::size_of::<Click>(), 32);
        let f = Fingerprinter::default();
        let max = sym(Sym::MAX);
        let new = |score, rank| NewItem {
            item: max,
            score,
            rank,
        };
        // Ranks that are the positions (or null) are not stored; any other ranks are.
        let cases: Vec<Vec<NewItem>> = vec![
            vec![new(Some(0.1), Some(1)), new(None, Some(2)), new(None, None)],
            vec![
                new(Some(f64::MIN_POSITIVE), Some(-3)),
                new(None, Some(0)),
                new(Some(-0.0), None),
                new(Some(f64::MAX), Some(i32::MAX)),
                new(None, Some(i32::MIN)),
            ],
            vec![new(None, Some(2)), new(Some(1e300), Some(1))],
            vec![],
        ];
        let mut user = User::new("u");
        for (i, list_items) in cases.iter().enumerate() {
            let inserted = user.insert_list(
                NewList {
                    event: f.of(&i.to_string()),
                    micros: -(i as i64),
                    model: None,
                    surface: None,
                    request: Some("r"),
                    items: list_items.clone(),
                },
                10,
            );
            assert_eq!(inserted, Inserted::Added);
        }
        let expected: Items = cases
            .iter()
            .map(|l| l.iter().map(|i| (Some(i.item), i.score, i.rank)).collect())
            .collect();
        assert_eq!(items(&user), expected);
        // Implied ranks take 3 slots, explicit ones 5 + 2, the third list 2 + 1.
        assert_eq!(user.items.len(), 3 + 7 + 3);
        // Dropping lists keeps the others' ranks with them.
        user.truncate_lists(2);
        assert_eq!(items(&user), expected[..2]);
        assert_eq!(user.items.len(), 3 + 7);
        assert!(user.evict_before(0));
        assert_eq!(items(&user), expected[..1]);
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
