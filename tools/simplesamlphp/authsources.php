<?php
/*
 * The IdP's users: `exampleauth:UserPass`, "<username>:<password>" => attributes.
 * The attribute names are the ones jitledger's test maps (email, givenName, sn,
 * displayName, role, eduPersonPrincipalName) plus a Yext-style ACL entry for alice; carol's
 * names need escaping in XML.
 */
$config = [
    'admin' => [
        'core:AdminPassword',
    ],

    'example-userpass' => [
        'exampleauth:UserPass',

        'alice:alicepass' => [
            'uid' => ['alice'],
            'eduPersonPrincipalName' => ['alice@example.org'],
            'email' => ['Alice@Example.com'],
            'givenName' => ['Alice'],
            'sn' => ['Liddell'],
            'displayName' => ['Alice Liddell'],
            'role' => ['Developer'],
            'eduPersonAffiliation' => ['member', 'staff'],
            'acl[0].roleId' => ['Developer'],
            'acl[0].on' => ['account-7'],
            'acl[0].onType' => ['ACCOUNT'],
        ],
        // Text that must be escaped in XML, non-ASCII and outside the BMP: what the
        // signature's digest covers is the canonical form of the escaped text.
        'carol:carolpass' => [
            'uid' => ['carol'],
            'eduPersonPrincipalName' => ['carol@example.org'],
            'email' => ['carol@example.com'],
            'givenName' => ["Zo\u{00eb} \u{1F600} \"Q\" 'a'"],
            'sn' => ["O'Brien & Sons <Ltd> ]]> x"],
            'displayName' => ['Zoë & <b> ]]> "q"'],
            'role' => ['Agent'],
        ],
        'bob:bobpass' => [
            'uid' => ['bob'],
            'eduPersonPrincipalName' => ['bob@example.org'],
            'email' => ['bob@example.com'],
            'givenName' => ['Bob'],
            'sn' => ['Builder'],
            'role' => ['admin'],
            'eduPersonAffiliation' => ['member'],
        ],
    ],
];
