/* Being written: see store/chain.h and store/store.h. */
