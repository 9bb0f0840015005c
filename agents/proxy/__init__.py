"""The proxy: Services and their ready endpoints -> one nftables table on every node."""
