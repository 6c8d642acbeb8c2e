//! Tests of the hl7 crate as a whole: property-based fuzzing of the MLLP framer and the
//! message parser and mapping (proptest, stable toolchain), and the shared PCD-01 files against
//! snapshots of what they give.

mod fuzz;
mod shared_files;
