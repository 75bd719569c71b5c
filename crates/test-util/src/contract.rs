//! What every contract suite's macro expands to: one `#[tokio::test]` per contract test,
//! each making a fresh adapter with `$make` (an async expression yielding `(port,
//! guard)`; the guard, a temporary directory or a server, lives as long as the test) and
//! running `$crate::<suite>::<test>(port)`.

/// One test per name in `$names`, from the suite module `$suite`. `$attrs` is a bracketed
/// list of attributes (`[#[ignore = "…"]]`) every test gets.
#[doc(hidden)]
#[macro_export]
macro_rules! contract_tests {
    ($suite:ident; $make:expr; $attrs:tt; $($name:ident),* $(,)?) => {
        $( $crate::contract_tests!(@one $suite; $make; $name; $attrs); )*
    };
    (@one $suite:ident; $make:expr; $name:ident; [$($attr:tt)*]) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $name() {
            let (port, _guard) = $make.await;
            $crate::$suite::$name(port).await;
        }
    };
}
