//! Conversions between types of the same shape on two sides of a boundary (the wire's and the
//! broker's; the broker's and the stored ones): each side owns its types, and these macros
//! write the field-by-field `From` impls between them, so a field added on one side without
//! the other fails to compile instead of going missing.

/// Both `From` directions between another side's struct and one of ours with the same fields.
/// `field` moves as is; `field: into` converts; `field: opt` converts an `Option`'s value;
/// `field: each` converts every element of a `Vec`.
macro_rules! mirror {
    ($theirs:ty => $ours:ident { $($field:ident $(: $how:ident)?),* $(,)? }) => {
        impl From<$theirs> for $ours {
            fn from(v: $theirs) -> Self {
                $ours { $($field: $crate::mirror::mirror!(@conv v.$field $(, $how)?)),* }
            }
        }
        impl From<$ours> for $theirs {
            fn from(v: $ours) -> Self {
                Self { $($field: $crate::mirror::mirror!(@conv v.$field $(, $how)?)),* }
            }
        }
    };
    (@conv $e:expr) => { $e };
    (@conv $e:expr, into) => { $e.into() };
    (@conv $e:expr, opt) => { $e.map(Into::into) };
    (@conv $e:expr, each) => { $e.into_iter().map(Into::into).collect() };
}

/// Both `From` directions between another side's enum and one of ours with the same unit
/// variants.
macro_rules! mirror_enum {
    ($theirs:ty => $ours:ident { $($variant:ident),* $(,)? }) => {
        impl From<$theirs> for $ours {
            fn from(v: $theirs) -> Self {
                match v { $(<$theirs>::$variant => $ours::$variant),* }
            }
        }
        impl From<$ours> for $theirs {
            fn from(v: $ours) -> Self {
                match v { $($ours::$variant => <$theirs>::$variant),* }
            }
        }
    };
}

pub(crate) use {mirror, mirror_enum};
