//! Property tests of scheme 2: reference packing round-trips, and the translation table
//! behaves like a map from segment id to (base, length) under inserts and removals.

use std::collections::HashMap;

use memlink_capability::segment::{Segment, SegmentId};
use memlink_capability::shared_ref::{ResolveError, SharedRef, TranslationTable};
use proptest::prelude::*;

proptest! {
    #[test]
    fn packing_round_trips(id in 1u64..=u32::MAX as u64, offset in any::<u32>()) {
        let id = SegmentId::from_raw(id).unwrap();
        let r = SharedRef::new(id, offset);
        prop_assert!(!r.is_null());
        prop_assert_eq!(r.segment(), Some(id));
        prop_assert_eq!(r.offset(), offset);
        prop_assert_eq!(SharedRef::from_raw(r.raw()), r);
        prop_assert_eq!(r.raw() >> 32, id.raw());
    }

    #[test]
    fn add_stays_in_segment_or_fails(id in 1u64..=u32::MAX as u64, offset in any::<u32>(), delta in any::<u32>()) {
        let id = SegmentId::from_raw(id).unwrap();
        let r = SharedRef::new(id, offset);
        match r.checked_add(delta) {
            Some(s) => {
                prop_assert_eq!(s.segment(), Some(id));
                prop_assert_eq!(s.offset() as u64, offset as u64 + delta as u64);
            }
            None => prop_assert!(offset as u64 + delta as u64 > u32::MAX as u64),
        }
    }

    #[test]
    fn only_zero_is_null(raw in any::<u64>()) {
        prop_assert_eq!(SharedRef::from_raw(raw).is_null(), raw == 0);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(usize),
    Remove(usize),
    Resolve { seg: usize, offset: u32 },
    ResolveForeign(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..20_000).prop_map(Op::Insert),
        (0usize..8).prop_map(Op::Remove),
        ((0usize..8), (0u32..24_000)).prop_map(|(seg, offset)| Op::Resolve { seg, offset }),
        any::<u32>().prop_map(Op::ResolveForeign),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// The table agrees with a HashMap model: resolve succeeds exactly for attached
    /// segments and offsets whose object fits, at base + offset of this process.
    #[test]
    fn translation_table_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut table = TranslationTable::new();
        // Model: live segments in insertion order, id -> (base, payload_len).
        let mut live: Vec<SegmentId> = Vec::new();
        let mut model: HashMap<SegmentId, (usize, usize)> = HashMap::new();
        let mut removed: Vec<SegmentId> = Vec::new();
        for op in ops {
            match op {
                Op::Insert(len) => {
                    let seg = Segment::create("prop", len).unwrap();
                    model.insert(seg.id(), (seg.payload_ptr() as usize, len));
                    live.push(seg.id());
                    table.insert(seg).unwrap();
                }
                Op::Remove(k) => {
                    if !live.is_empty() {
                        let id = live.remove(k % live.len());
                        model.remove(&id);
                        prop_assert!(table.remove(id).is_some());
                        removed.push(id);
                    }
                }
                Op::Resolve { seg, offset } => {
                    let Some(&id) = live.get(seg % live.len().max(1)) else { continue };
                    let (base, len) = model[&id];
                    let r = SharedRef::new(id, offset);
                    match table.resolve::<u32>(r) {
                        Ok(p) => {
                            prop_assert_eq!(p as usize, base + offset as usize);
                            prop_assert!(offset as usize + 4 <= len && offset % 4 == 0);
                            prop_assert_eq!(table.reference_to(p), Some(r));
                        }
                        Err(ResolveError::OutOfRange { .. }) => prop_assert!(offset as usize + 4 > len),
                        Err(ResolveError::Misaligned { .. }) => prop_assert!(offset % 4 != 0),
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                Op::ResolveForeign(raw_id) => {
                    let Some(id) = SegmentId::from_raw(raw_id as u64) else { continue };
                    if model.contains_key(&id) { continue }
                    prop_assert_eq!(
                        table.resolve::<u8>(SharedRef::new(id, 0)),
                        Err(ResolveError::UnknownSegment(id.raw()))
                    );
                }
            }
            prop_assert_eq!(table.len(), model.len());
            for id in &removed {
                if !model.contains_key(id) {
                    prop_assert!(table.resolve::<u8>(SharedRef::new(*id, 0)).is_err());
                }
            }
        }
    }
}
